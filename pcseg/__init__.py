"""pcseg: label-efficient 3D point-cloud semantic segmentation.

Data flows one way: raw scans (readers, ``pcseg.readers``) -> processed scenes (``pcseg.data``)
-> voxels -> MinkUNet (``pcseg.models`` on ``pcseg.sparse``) -> losses (``pcseg.methods``)
-> training / evaluation (``pcseg.engine``) -> predictions -> metrics / viewer (``pcseg.viz``).
"""

__version__ = "0.1.0"
