#!/usr/bin/python3
"""Counts test cases across Bazel's test logs and prints `N passed, N failed, N skipped`.

Every test target must have produced its test.xml during this run (newer than --since);
a target without one (build failure, timeout, crash before writing it) counts as one failure.
"""
import argparse
import glob
import os
import sys
import xml.etree.ElementTree as ET


def count_target(xml_path):
    passed = failed = skipped = 0
    failures = []
    root = ET.parse(xml_path).getroot()
    for case in root.iter("testcase"):
        name = "%s.%s" % (case.get("classname", ""), case.get("name", ""))
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failures.append(name)
        elif (case.get("result") == "skipped" or case.get("status") == "notrun"
              or case.find("skipped") is not None):
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, failures


def is_fresh(path, since):
    return os.path.exists(path) and os.path.getmtime(path) >= since


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--testlogs", required=True)
    parser.add_argument("--since", type=float, required=True,
                        help="epoch seconds; older logs are stale")
    parser.add_argument("--bazel-exit-code", type=int, default=0,
                        help="1 means some target failed to build: counted as one failure")
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()

    totals = [0, 0, 0]
    if args.bazel_exit_code == 1:
        print("FAILED: some targets did not build (see the Bazel output above)")
        totals[1] += 1
    elif args.bazel_exit_code not in (0, 3):
        print("FAILED: bazel test exited with %d" % args.bazel_exit_code)
        totals[1] += 1
    for target in args.targets:
        rel = target.lstrip("/").replace(":", "/")
        target_dir = os.path.join(args.testlogs, rel)
        # A sharded target (shard_count) has one test.xml per shard_K_of_N directory.
        shards = sorted(glob.glob(os.path.join(target_dir, "shard_*_of_*", "test.xml")))
        xml_paths = [os.path.join(target_dir, "test.xml")]
        # A target that became sharded keeps its old unsharded test.xml in a reused output
        # base: the shards are this run's result unless that file is newer than --since.
        if shards and not is_fresh(xml_paths[0], args.since):
            xml_paths = shards
        for xml_path in xml_paths:
            label = target
            if xml_path in shards:
                label = "%s (%s)" % (target, os.path.basename(os.path.dirname(xml_path)))
            if not is_fresh(xml_path, args.since):
                print("FAILED (no result this run): %s" % label)
                totals[1] += 1
                continue
            try:
                p, f, s, failures = count_target(xml_path)
            except ET.ParseError as e:
                print("FAILED (unreadable test.xml: %s): %s" % (e, label))
                totals[1] += 1
                continue
            if p + f + s == 0:
                # A target whose runner reports no cases (e.g. a shell test) counts by exit
                # status, which Bazel records as a single testcase; an empty file means nothing
                # ran.
                print("FAILED (no test cases): %s" % label)
                totals[1] += 1
                continue
            for name in failures:
                print("FAILED: %s %s" % (label, name))
            totals[0] += p
            totals[1] += f
            totals[2] += s
    print("%d passed, %d failed, %d skipped" % tuple(totals))
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
