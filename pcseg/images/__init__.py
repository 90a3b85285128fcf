"""The 2D image path: processed image folders, image label regimes, readers of image datasets
(Pascal VOC, Cityscapes, an images/ + masks/ folder) and synthetic images."""
