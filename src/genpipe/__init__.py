"""genpipe: VAE vs GAN for generation and restoration, measured and promoted."""
