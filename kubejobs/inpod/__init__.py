"""The programs that run inside a kubejobs pod: the data stager and the log shipper.

`kubejobs stage-in` (init container) pulls CFS data into the shared volume;
`kubejobs ship-logs` (native sidecar) journals the containers' output to disk,
ships it to the Colonies process log in batches and syncs fs.dirs back after
the main containers exit. See docs/inpod.md.
"""
