"""Results read back into tables and plots, rendered as Markdown and HTML."""
