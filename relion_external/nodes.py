"""RELION output nodes: which RELION runs the project, and the node types it understands.

RELION reads `RELION_OUTPUT_NODES.star` when it sees the job's exit marker. Each major version names
node types its own way, and RELION 5 does not translate 4.0 labels (a 4.0 label under RELION 5 hides
the particles from later jobs), so the labels must follow the project's own pipeline file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from cryorefine.io.atomic import atomic_write_text

OUTPUT_NODES_NAME = "RELION_OUTPUT_NODES.star"


class RelionVersion(enum.Enum):
    V3_1 = "3.1"
    V4_0 = "4.0"
    V5_0 = "5.0"


class NodeKind(enum.Enum):
    MICROGRAPHS = "micrographs"
    COORDINATES = "coordinates"
    PARTICLES = "particles"
    MAP = "map"
    MASK = "mask"
    MODEL = "model"  # a trained cryorefine model, registered by its config.json


# RELION 3.1 integer node types and the 4.0 / 5.0 labels (src/pipeline_jobs.h of each version). A trained
# model is parameters for a later job, as RELION's own polishing parameters (3.1: 15) and Topaz's model
# (4.0: ProcessData.sav.topaz.model, 5.0: ParamsData.sav.topaz.model) are.
_NODE_TYPES: dict[RelionVersion, dict[NodeKind, str]] = {
    RelionVersion.V3_1: {NodeKind.MICROGRAPHS: "1", NodeKind.COORDINATES: "2", NodeKind.PARTICLES: "3",
                         NodeKind.MAP: "6", NodeKind.MASK: "7",
                         NodeKind.MODEL: "15"},
    RelionVersion.V4_0: {
        NodeKind.MICROGRAPHS: "MicrographsData.star.relion",
        NodeKind.COORDINATES: "MicrographsCoords.star.relion",
        NodeKind.PARTICLES: "ParticlesData.star.relion",
        NodeKind.MAP: "DensityMap.mrc",
        NodeKind.MASK: "Mask3D.mrc",
        NodeKind.MODEL: "ProcessData.json.cryorefine.model",
    },
    RelionVersion.V5_0: {
        NodeKind.MICROGRAPHS: "MicrographGroupMetadata.star.relion",
        NodeKind.COORDINATES: "MicrographCoordsGroup.star.relion",
        NodeKind.PARTICLES: "ParticleGroupMetadata.star.relion",
        NodeKind.MAP: "DensityMap.mrc",
        NodeKind.MASK: "Mask3D.mrc",
        NodeKind.MODEL: "ParamsData.json.cryorefine.model",
    },
}


@dataclass(frozen=True)
class OutputNode:
    """A file the job made, named relative to the project directory as RELION expects."""

    name: str
    kind: NodeKind


def detect_relion_version(project_dir: Path) -> RelionVersion:
    """Read the project's `default_pipeline.star`: `# version 50001` is RELION 5, type labels are 4.0.

    RELION 4.0 labels its process types too (`_rlnPipeLineProcessTypeLabel`), so a 4.0 project whose only
    job is this one, run without input nodes (a scene job in a new project), is still 4.0: its pipeline has
    no nodes table yet, and 4.0 reads only type labels from RELION_OUTPUT_NODES.star.
    A project without a pipeline file (a job run by hand or by another pipeliner) gets 3.1 integer
    types, which every version reads when no pipeline exists to disagree.
    """
    pipeline = Path(project_dir) / "default_pipeline.star"
    if not pipeline.is_file():
        return RelionVersion.V3_1
    text = pipeline.read_text(errors="replace")
    if any(line.split()[:3] == ["#", "version", "50001"] for line in text.splitlines()):
        return RelionVersion.V5_0
    if "_rlnPipeLineNodeTypeLabel" in text or "_rlnPipeLineProcessTypeLabel" in text:
        return RelionVersion.V4_0
    return RelionVersion.V3_1


def output_nodes_text(nodes: list[OutputNode], version: RelionVersion) -> str:
    type_column = "_rlnPipeLineNodeType" if version is RelionVersion.V3_1 else "_rlnPipeLineNodeTypeLabel"
    version_line = "# version 50001" if version is RelionVersion.V5_0 else "# version 30001"
    rows = "".join(f"{node.name} {_NODE_TYPES[version][node.kind]}\n" for node in nodes)
    return (
        f"\n{version_line}\n\ndata_output_nodes\n\nloop_\n"
        f"_rlnPipeLineNodeName #1\n{type_column} #2\n{rows}\n"
    )


def write_output_nodes(job_dir: Path, nodes: list[OutputNode], version: RelionVersion) -> Path:
    """Write the nodes file atomically, so RELION never reads half of it."""
    path = Path(job_dir) / OUTPUT_NODES_NAME
    atomic_write_text(path, output_nodes_text(nodes, version))
    return path
