"""Pure metrics, corruptions, restoration methods and the evaluate report."""
