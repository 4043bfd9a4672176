#!/usr/bin/python3
"""Picks a small set of new corpus inputs from a libFuzzer merge control file.

    cover.py CONTROL_FILE MAX_NEW

The control file (`-merge=1 -merge_control_file=...`, committed corpus first) lists the features
each input reaches. Committed inputs are kept; among the others, the one reaching the most
features not reached yet is taken, then the next, until nothing new is reached or MAX_NEW
inputs are taken. Prints the paths taken, one a line. libFuzzer's own merge keeps every
input that adds a feature in size order, which gives several times as many files.
"""
import sys


def main():
    path, room = sys.argv[1], int(sys.argv[2])
    with open(path) as f:
        lines = f.read().splitlines()
    total, first = int(lines[0]), int(lines[1])
    files = lines[2:2 + total]
    features = {}
    for line in lines[2 + total:]:
        parts = line.split()
        if parts and parts[0] == 'FT':
            features[int(parts[1])] = set(map(int, parts[2:]))
    covered = set()
    for i in range(first):
        covered |= features.get(i, set())
    candidates = {i: features.get(i, set()) - covered for i in range(first, total)}
    while room > 0:
        best = max(candidates, key=lambda i: len(candidates[i] - covered), default=None)
        if best is None or not candidates[best] - covered:
            break
        covered |= candidates.pop(best)
        print(files[best])
        room -= 1


if __name__ == '__main__':
    main()
