"""A lab's own network, kept outside nnlight (the README's worked example)."""
