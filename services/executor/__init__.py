"""The executor: run the jobs placed on this node and report what happens to them."""
