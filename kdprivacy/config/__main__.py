"""``python -m kdprivacy.config > schemas/config.schema.json``: the JSON schema of the workflow config."""

import json
import sys

from kdprivacy.config import json_schema

json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
sys.stdout.write("\n")
