"""The streaming job's entry point, as one hands it to a Beam runner.

    python pipelines/stream.py --project . --until-caught-up
    python pipelines/stream.py --project . --runner FlinkRunner --flink_master=host:8081 ...

Same as `featureline stream`: the pipeline is built from the compiled plan
(src/featureline/stream/pipeline.py); arguments it does not know go to Beam.
"""

import sys

from featureline.cli import app

if __name__ == "__main__":
    sys.exit(app(["stream", *sys.argv[1:]]))
