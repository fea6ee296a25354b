"""Evaluation of trained models: likelihood estimates, posterior health, samples and reports.

Modules, one job each:
- importance:  model-agnostic importance sampling (log-mean-exp of weights and its standard error);
- jacobian:    per-sentence d x d Jacobians in one batched pass (chain log-determinants, Hessians);
- likelihood:  per-sentence log-likelihood estimates for the LM, the VAE and both SRI estimators;
- posterior:   per-sentence Gaussian posterior approximations and reconstruction, KL, MI, active units;
- samples:     prior samples, reconstructions and interpolations as text;
- suite:       everything above for one trained model, on one set of test sentences;
- report:      the markdown comparison table, plots and their CSV data.
- heldout:     the registry gate's number: an SRI generator's importance-sampled NLL on given sentences.
"""
