"""Detection of IPC-spawned execution paths (ATT&CK T1559, DET0493), without storage.

    snapshot = HostSnapshot.from_results("web-1", {"process_lineage": rows, ...})
    paths = build_paths(snapshot)
    detector = Detector(Baseline.default(), state)       # state: DetectionState you keep
    findings = detector.detect(paths, now=time.time())
    print(build_trace(snapshot, findings[0].pid).to_text())
    for occurrence in findings[0].occurrences:   # one per process on the path
        print(occurrence.pid, occurrence.start_time, occurrence.severity)

Functions take rows exactly as the shipped packs return them (string values) and return
dataclasses; nothing here reads a database, so the storage layer decides where rows and
``DetectionState`` live.

Exceptions: ``BaselineError`` (a baseline file that cannot be read; a ``ValueError``).
"""

from fleetctl.detection.baseline import (
    Baseline,
    BaselineError,
    FifoAccessRule,
    LearnedKeys,
    ParentChildRule,
    PipeNamePatterns,
    PipeNameRule,
    SocketPathRule,
)
from fleetctl.detection.detector import (
    Detector,
    Finding,
    Learned,
    Occurrence,
    consulted,
    finding_id,
)
from fleetctl.detection.evidence import Evidence
from fleetctl.detection.learning import DEFAULT_LEARNING_WINDOW, LearningState, learning_state
from fleetctl.detection.paths import (
    Channel,
    ExecutionPath,
    Feed,
    Partner,
    ProcessRef,
    build_paths,
    container_hint,
)
from fleetctl.detection.scoring import (
    NOVELTY_REASONS,
    SEVERITIES,
    WEIGHTS,
    Prevalence,
    Reason,
    Score,
    score_path,
    severity_for,
)
from fleetctl.detection.snapshot import HostSnapshot
from fleetctl.detection.state import DetectionState
from fleetctl.detection.trace import ProcessTrace, TraceEdge, TraceNode, build_trace

__all__ = [
    "DEFAULT_LEARNING_WINDOW",
    "NOVELTY_REASONS",
    "SEVERITIES",
    "WEIGHTS",
    "Baseline",
    "BaselineError",
    "Channel",
    "DetectionState",
    "Detector",
    "Evidence",
    "ExecutionPath",
    "Feed",
    "FifoAccessRule",
    "Finding",
    "HostSnapshot",
    "Learned",
    "LearnedKeys",
    "LearningState",
    "Occurrence",
    "ParentChildRule",
    "Partner",
    "PipeNamePatterns",
    "PipeNameRule",
    "Prevalence",
    "ProcessRef",
    "ProcessTrace",
    "Reason",
    "Score",
    "SocketPathRule",
    "TraceEdge",
    "TraceNode",
    "build_paths",
    "build_trace",
    "consulted",
    "container_hint",
    "finding_id",
    "learning_state",
    "score_path",
    "severity_for",
]
