"""Explaining results: correlations and importance over a study, loss landscapes and Hessian
spectra of trained models, ablations. Analysis reads studies and run folders; it never trains,
except the explicit ablation."""
