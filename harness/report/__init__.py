"""Tables (and later plots, HTML, comparisons) built from run directories."""
