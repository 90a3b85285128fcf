"""The ASPRS class spec the custom-reader tests share (CLASSES.yaml keys as a dict)."""

ASPRS = {
    "names": ["ground", "low_vegetation", "high_vegetation", "building"],
    "label_field": "classification",
    "map": {2: "ground", 3: "low_vegetation", 5: "high_vegetation", 6: "building"},
    "ignore": [0, 1],
    "features": ["intensity"],
    "voxel_size": 0.5,
}
