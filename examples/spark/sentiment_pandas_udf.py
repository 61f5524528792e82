#!/usr/bin/env python3
"""Classify JSONL on Spark with the `sentiment` Python package in each
executor (mapInPandas), instead of the binary as a subprocess
(sentiment_spark.py):

    pip install sentiment-*.whl pyspark pandas pyarrow   # on every node
    spark-submit examples/spark/sentiment_pandas_udf.py INPUT OUTPUT \
        [--model M] [--precision int8] [--threads T] [--partitions N]

Each row gets `label` and `score` (replacing columns of those names); its
other columns pass through. A row
whose text is null gets null label and score, and a text that cannot be
classified fails the task (Spark retries it, then fails the job), where the
subprocess recipe writes an error record instead: choose that one for
untrusted input. The model loads once per partition (the bundled one in
well under a second), which then streams through it in Arrow batches.
"""

import argparse

from pyspark.sql import SparkSession
from pyspark.sql.types import DoubleType, StringType, StructField, StructType


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="JSONL input: a file, folder or glob Spark can read")
    parser.add_argument("output", help="output folder for the JSONL part files (must not exist)")
    parser.add_argument("--model", default=None, help="model folder or hub id [default: the bundled model]")
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16", "int8"])
    parser.add_argument("--threads", type=int, default=1, help="threads per executor task [default: 1]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--field", default="text", help="the column holding the text [default: text]")
    parser.add_argument("--master", default=None, help="e.g. local[2] when run with plain python")
    return parser.parse_args(argv)


def classify_partitions(args):
    def classify(frames):
        import sentiment

        clf = sentiment.Classifier(args.model, precision=args.precision, threads=args.threads)
        for frame in frames:
            texts = frame[args.field]
            present = texts.notna()
            results = clf(texts[present].astype(str).tolist(), batch_size=args.batch_size)
            frame["label"] = None
            frame["score"] = None
            frame.loc[present, "label"] = [r["label"] for r in results]
            frame.loc[present, "score"] = [r["score"] for r in results]
            yield frame

    return classify


def main(argv=None):
    args = parse_args(argv)
    builder = SparkSession.builder.appName("sentiment-pandas")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    frame = spark.read.json(args.input)
    if args.partitions:
        frame = frame.repartition(args.partitions)
    # `label` and `score` columns already there (gold labels, say) are replaced.
    kept = [field for field in frame.schema if field.name not in ("label", "score")]
    schema = StructType(kept + [StructField("label", StringType()), StructField("score", DoubleType())])
    frame.mapInPandas(classify_partitions(args), schema).write.json(args.output)
    spark.stop()


if __name__ == "__main__":
    main()
