"""Plans: DAGs of sweeps and analyses in experiments/*.yaml, and the runner that executes them."""
