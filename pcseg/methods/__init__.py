"""Training methods: each turns model outputs + a batch into named loss terms."""
