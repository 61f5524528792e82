#!/usr/bin/env python3
"""Classify JSONL at cluster scale: Apache Spark distributes the lines, and
`sentiment batch` classifies each partition.

    spark-submit examples/spark/sentiment_spark.py INPUT OUTPUT \
        [--binary PATH] [--partitions N] [--threads T] [--model M] [--quantize int8]
    python examples/spark/sentiment_spark.py INPUT OUTPUT --master local[2]

INPUT and OUTPUT are anything Spark reads and writes (local paths, HDFS,
S3); the input is JSONL, the output JSONL part files with one line per input
line, fields passed through, bad lines as their `{"line","error"}` records.

The `sentiment` binary (which carries its default model) is shipped to the
executors with SparkContext.addFile, so nothing needs installing on them.
Each partition runs one `sentiment batch --errors-ok` process, fed through
its stdin: bad lines do not fail the task, while a missing model, a crash or
a killed process does, and Spark retries it. A failed attempt's output is
discarded by Spark's output committer, so every line appears exactly once.

Why mapPartitions with a subprocess rather than RDD.pipe: the binary's path
on an executor is only known there (SparkFiles.get), pipe's command is fixed
on the driver, and pipe cannot tell "some lines failed" (exit 1, fine here)
from a crash; this function checks the exit code itself and hands Spark the
process's stderr when it fails. The contract is the same as pipe's: lines in
on stdin, the same number of lines out on stdout, in order.
"""

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import threading

from pyspark import SparkConf, SparkContext, SparkFiles


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="JSONL input: a file, folder or glob Spark can read")
    parser.add_argument("output", help="output folder for the JSONL part files (must not exist)")
    parser.add_argument(
        "--binary",
        default=shutil.which("sentiment"),
        help="the sentiment binary to ship to the executors [default: sentiment on PATH]",
    )
    parser.add_argument("--partitions", type=int, default=None, help="partitions to split the input into")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per sentiment process [default: spark.task.cpus, else 1]",
    )
    parser.add_argument("--model", default=None, help="a model folder on every executor, or a hub id")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--field", default="text", help="the JSON field holding the text")
    parser.add_argument("--pair-field", default=None,
                        help="the JSON field holding a text pair's second text (pair models: NLI)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--master", default=None, help="e.g. local[2]; spark-submit sets it otherwise")
    # For the fault test: the first attempt of partition 0 has its process
    # killed halfway (a marker file records that it happened).
    parser.add_argument("--kill-once-marker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def sentiment_command(binary, args, threads):
    command = [binary]
    if args.model:
        command += ["--model", args.model]
    if args.quantize:
        command += ["--quantize", args.quantize]
    command += ["--threads", str(threads), "batch", "--errors-ok", "--field", args.field]
    if args.pair_field:
        command += ["--pair-field", args.pair_field]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    return command


def classify_partition(args, threads):
    """The function each task runs over its partition's lines."""

    def run(index, lines):
        binary = SparkFiles.get(os.path.basename(args.binary))
        os.chmod(binary, 0o755)
        env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "0"))
        process = subprocess.Popen(
            sentiment_command(binary, args, threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        kill_now = (
            args.kill_once_marker is not None
            and index == 0
            and not os.path.exists(args.kill_once_marker)
        )
        stderr = []
        threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True).start()

        def feed():
            # Lines go in chunks: one write per few hundred lines keeps the
            # Python side's share of the CPU small.
            stdin = io.TextIOWrapper(process.stdin, encoding="utf-8", newline="\n", write_through=False)
            try:
                chunk = []
                for n, line in enumerate(lines):
                    if kill_now and n == 50:
                        open(args.kill_once_marker, "w").close()
                        process.send_signal(signal.SIGKILL)
                        return
                    chunk.append(line)
                    if len(chunk) == 256:
                        stdin.write("\n".join(chunk) + "\n")
                        chunk.clear()
                if chunk:
                    stdin.write("\n".join(chunk) + "\n")
                stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass  # The process died; its exit code says why.

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        for out in io.TextIOWrapper(process.stdout, encoding="utf-8", newline="\n"):
            yield out[:-1] if out.endswith("\n") else out
        writer.join()
        code = process.wait()
        if code != 0:
            message = b"".join(stderr).decode("utf-8", "replace").strip()
            raise RuntimeError(f"sentiment batch exited with {code} on partition {index}: {message}")

    return run


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.binary or not os.path.isfile(args.binary):
        sys.exit("sentiment_spark.py: give --binary PATH (no sentiment binary on PATH)")
    conf = SparkConf().setAppName("sentiment")
    if args.master:
        conf = conf.setMaster(args.master)
    sc = SparkContext.getOrCreate(conf)
    sc.addFile(args.binary)
    threads = args.threads or int(sc.getConf().get("spark.task.cpus", "1"))
    lines = sc.textFile(args.input, minPartitions=args.partitions or sc.defaultParallelism)
    if args.partitions and lines.getNumPartitions() != args.partitions:
        # textFile splits by bytes and may not reach the count asked for;
        # repartition keeps every line (its order across partitions is
        # not the input's, but each output line carries its fields).
        lines = lines.repartition(args.partitions)
    lines.mapPartitionsWithIndex(classify_partition(args, threads)).saveAsTextFile(args.output)
    sc.stop()


if __name__ == "__main__":
    main()
