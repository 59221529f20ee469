"""``python -m kdprivacy.config > schemas/config.schema.json``: the JSON schema of the workflow config.
``python -m kdprivacy.config protocols``: README's table of the ``protocol: paper`` deviations."""

import json
import sys

from kdprivacy.config import json_schema
from kdprivacy.config.protocol import markdown_table

if sys.argv[1:] == ["protocols"]:
    print(markdown_table())
elif sys.argv[1:]:
    sys.exit(f"usage: python -m kdprivacy.config [protocols] (got {' '.join(sys.argv[1:])})")
else:
    json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
