"""The Trainer subclass and checkpoint I/O."""
