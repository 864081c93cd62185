"""Label Studio's vocabulary, pure and without I/O: the labeling-config parser and one class per control kind."""
