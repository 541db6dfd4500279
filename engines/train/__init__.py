"""Training of the feature network: contrastive kernel features plus regression (DESIGN.md s5)."""
