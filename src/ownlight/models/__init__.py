"""Where model files come from: a path the operator gives, or an installed package."""
