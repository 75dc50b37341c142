"""Adapters from the paper's real datasets to the prepared format (images stay in place)."""
from mld.data.adapters.coco import read_coco
from mld.data.adapters.common import ReadDataset, write_read_dataset
from mld.data.adapters.nuswide import read_nuswide
from mld.data.adapters.openimages import read_openimages
from mld.data.adapters.voc import read_voc

__all__ = ["ReadDataset", "read_coco", "read_nuswide", "read_openimages", "read_voc", "write_read_dataset"]
