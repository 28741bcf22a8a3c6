"""params.yaml made into one validated spec, the errors users see, and the Keras backend choice."""
