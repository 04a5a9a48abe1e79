"""FER-2013 data: ingestion of every common form of the dataset into one cached uint8 store.

data = load_data("../shared/data/fer2013.zip")   # or a folder, fer2013.csv, a prepared dir
data.splits["train"].images                      # uint8 (N, 48, 48)
print(format_counts(data))
"""

from .errors import DataError
from .sources import load_data, prepare
from .store import CLASS_NAMES, FerData, Split, format_counts

__all__ = ["CLASS_NAMES", "DataError", "FerData", "Split", "format_counts", "load_data", "prepare"]
