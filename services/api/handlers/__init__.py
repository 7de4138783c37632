"""HTTP handlers, one module per resource; each module exports ``ROUTES``."""
