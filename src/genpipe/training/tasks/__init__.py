"""One module per trainable model family; each module's `TASK` is its Task class."""
