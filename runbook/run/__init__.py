"""Running the phases: the batch, the fleet, their kernels, and the environment contract with those kernels."""
