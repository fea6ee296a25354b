"""Evaluation of trained models: likelihood estimates, posterior health, samples and reports.

Modules, one job each:
- estimators:  the one shape of a log-likelihood estimator, (model, batch, settings) -> Estimate;
- importance:  model-agnostic importance sampling (log-mean-exp of weights and its standard error);
- ais:         annealed importance sampling from the prior, HMC transitions (the reported estimate);
- bdmc:        bidirectional Monte Carlo on sentences simulated from the model (how tight AIS is);
- jacobian:    per-sentence d x d Jacobians in one batched pass (chain log-determinants, Hessians);
- likelihood:  per-sentence log-likelihood estimates for the LM, the VAE and both SRI estimators;
- posterior:   per-sentence Gaussian posterior approximations and reconstruction, KL, MI, active units;
- samples:     prior samples, reconstructions and interpolations as text;
- suite:       the list of estimators and everything above for one trained model, on one set of test sentences;
- report:      the markdown comparison table, plots and their CSV data.
- heldout:     the registry gate's number: an SRI generator's importance-sampled NLL on given sentences.
"""
