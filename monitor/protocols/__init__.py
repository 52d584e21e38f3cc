"""Protocol files and the catalogs they share (config/): read, checked, and built into domain values.

`Library` loads a config folder (the packaged one, or a site's `protocols.directory`); errors name
the file and the key. The modules: files (reading), catalog (analytes, drugs), profiles (grading,
safety profiles), checks (cross-references), build (domain values), schema (the files' models).
"""

from monitor.protocols.catalog import load_catalog, load_drug_list
from monitor.protocols.library import Library, packaged_library

__all__ = ["Library", "load_catalog", "load_drug_list", "packaged_library"]
