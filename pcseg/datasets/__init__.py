"""Point-file formats (:mod:`pcseg.datasets.formats`); the raw dataset readers are in
:mod:`pcseg.readers`."""
