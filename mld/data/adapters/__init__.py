"""Adapters from the paper's real datasets to the prepared format (images stay in place)."""
from mld.data.adapters.cifar import read_cifar100
from mld.data.adapters.coco import read_coco
from mld.data.adapters.common import ReadDataset, write_read_dataset
from mld.data.adapters.nuswide import read_nuswide
from mld.data.adapters.openimages import read_openimages
from mld.data.adapters.stanford_cars import read_stanford_cars
from mld.data.adapters.voc import read_voc

__all__ = ["ReadDataset", "read_cifar100", "read_coco", "read_nuswide", "read_openimages", "read_stanford_cars",
           "read_voc", "write_read_dataset"]
