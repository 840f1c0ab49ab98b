"""The finite-difference engine: steps, batched evaluation, differences,
refinement and the pass band."""
