"""Build synthetic micrographs with ground-truth particle coordinates, poses and defocus."""

import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfCoordinates, SetOfCTF, SetOfMicrographs, SetOfVolumes

from cryorefine_scipion.constants import SCENE_CLEAN_MICROGRAPH, SCENE_MICROGRAPH
from cryorefine_scipion.convert import fill_scene_micrographs, map_with_sampling, read_scene
from cryorefine_scipion.objects import CryorefineScene
from cryorefine_scipion.protocols.protocol_base import ProtCryorefineBase, local_path

PLACEMENTS = ("uniform", "clustered", "boundary")
MAP_SUFFIXES = (".mrc", ".map", ".mrcs", ".ccp4")
MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
MIN_SIZE = 32  # the engine's smallest micrograph


class SceneOutputs(Enum):
    outputMicrographs = SetOfMicrographs
    outputCleanMicrographs = SetOfMicrographs
    outputCoordinates = SetOfCoordinates
    outputCTF = SetOfCTF
    outputScene = CryorefineScene


def copy_numbers(text: str, count: int, what: str) -> list[int]:
    """Copies per species from 'N' (all the same) or 'N1 N2 ...' (one per species); ValueError says why not.
    With no species of this kind the text does not matter."""
    if count == 0:
        return []
    words = (text or "").replace(",", " ").split()
    try:
        numbers = [int(word) for word in words]
    except ValueError:
        raise ValueError(f"Copies of the {what} must be whole numbers, got '{text}'.") from None
    if len(numbers) == 1:
        numbers *= count
    if len(numbers) != count:
        raise ValueError(f"Copies of the {what}: give one number, or one per {what[:-1]} ({count}); got '{text}'.")
    if any(number < 0 for number in numbers):
        raise ValueError(f"Copies of the {what} cannot be negative, got '{text}'.")
    return numbers


class ProtCryorefineScene(ProtCryorefineBase):
    """Build synthetic micrographs from maps and atomic structures with `cryorefine scene`:
    particles placed at random poses (uniform, clustered or along a band) in ice of varying
    thickness, imaged with a CTF, Poisson dose noise and a detector MTF. Registers the noisy and
    the clean micrographs, the true particle coordinates (each with its species name), the true
    defocus of each micrograph as CTFs, and the scene folder for 'translate scene'.
    """

    _label = "build scene"
    _possibleOutputs = SceneOutputs

    def _defineParams(self, form):
        form.addSection(label="Species")
        form.addParam("inputVolumes", params.MultiPointerParam, pointerClass="Volume,SetOfVolumes", allowsNull=True,
                      label="Maps", help="Density maps to place; the engine scales each to protein's contrast in ice.")
        form.addParam("volumeCopies", params.StringParam, default="10", label="Copies of each map",
                      help="Copies per micrograph: one number for every map, or one per map in the order above "
                           "(each volume of a set counts as one map).")
        form.addParam("inputAtomStructs", params.MultiPointerParam, pointerClass="AtomStruct", allowsNull=True,
                      label="Atomic structures", help="PDB or mmCIF models; their electron scattering potential "
                                                      "is computed (C-alpha-only models: one Gaussian per residue).")
        form.addParam("atomStructCopies", params.StringParam, default="10", label="Copies of each structure",
                      help="Copies per micrograph: one number for every structure, or one per structure.")
        form.addParam("speciesFiles", params.StringParam, default="", label="More species from files",
                      help="Maps or PDB/mmCIF models that are not in the project, as PATH:COPIES[:NAME] separated "
                           "by spaces, e.g. '/data/ribosome.mrc:20 apoferritin.pdb:10:apoferritin'. Relative "
                           "paths start from the project folder. A map's pixel size is read from its header.")

        form.addSection(label="Micrographs")
        form.addParam("numberOfMicrographs", params.IntParam, default=4, label="Number of micrographs")
        form.addParam("size", params.IntParam, default=1024, label="Micrograph size (px)")
        form.addParam("pixelSize", params.FloatParam, allowsNull=True, label="Pixel size (Å)",
                      help="Empty: the first map's pixel size (1 Å when every species is an atomic structure).")
        form.addParam("placement", params.EnumParam, choices=list(PLACEMENTS), default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label="Placement",
                      help="uniform: random, never overlapping; clustered: polysome-like chains; "
                           "boundary: along a circular band (a hole edge).")
        form.addParam("iceThickness", params.FloatParam, default=300.0, label="Mean ice thickness (Å)")
        form.addParam("defocusMin", params.FloatParam, default=1.0, label="Minimum defocus (µm)")
        form.addParam("defocusMax", params.FloatParam, default=2.5, label="Maximum defocus (µm)",
                      help="Each micrograph gets one defocus drawn uniformly from the range.")
        form.addParam("dose", params.FloatParam, default=40.0, label="Dose (e⁻/Å²)",
                      help="Sets the Poisson noise; 0 for noise-free micrographs.")
        form.addParam("voltage", params.FloatParam, default=300.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Voltage (kV)")
        form.addParam("sphericalAberration", params.FloatParam, default=2.7, expertLevel=params.LEVEL_ADVANCED,
                      label="Spherical aberration (mm)")
        form.addParam("amplitudeContrast", params.FloatParam, default=0.1, expertLevel=params.LEVEL_ADVANCED,
                      label="Amplitude contrast")
        form.addParam("boxSize", params.IntParam, default=0, label="Coordinate box (px)",
                      help="Box size of the output coordinates; 0 for the largest species' box at this pixel size.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addParam("extraParams", params.StringParam, default="", expertLevel=params.LEVEL_ADVANCED,
                      label="Additional arguments",
                      help="More `cryorefine scene` options, e.g. --min-separation 150 --ice-gradient 0.3 "
                           "--chain-length 8 --mtf none.")
        self._defineComputeParams(form)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.sceneStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def sceneDir(self, *parts) -> str:
        return self._getExtraPath("scene", *parts)

    def _volumes(self) -> list:
        volumes = []
        for pointer in self.inputVolumes:
            item = pointer.get()
            volumes += [volume.clone() for volume in item] if isinstance(item, SetOfVolumes) else [item]
        return volumes

    def _atomStructs(self) -> list:
        return [pointer.get() for pointer in self.inputAtomStructs]

    def _speciesArguments(self) -> list:
        """`--species PATH:COPIES` for every map, structure and file; maps whose header disagrees
        with Scipion's pixel size are copied with the right one first."""
        arguments = []
        volumes, structures = self._volumes(), self._atomStructs()
        volume_copies = copy_numbers(self.volumeCopies.get(), len(volumes), "maps")
        structure_copies = copy_numbers(self.atomStructCopies.get(), len(structures), "structures")
        for index, (volume, copies) in enumerate(zip(volumes, volume_copies)):
            path = local_path(volume.getFileName())
            header_fixed = self._getExtraPath(f"map{index + 1}_{os.path.basename(path)}")
            arguments += ["--species", f"{map_with_sampling(path, volume.getSamplingRate(), header_fixed)}:{copies}"]
        for structure, copies in zip(structures, structure_copies):
            arguments += ["--species", f"{local_path(structure.getFileName())}:{copies}"]
        for spec in (self.speciesFiles.get() or "").split():
            path, _, rest = spec.partition(":")
            arguments += ["--species", f"{os.path.abspath(path)}:{rest}" if rest else os.path.abspath(path)]
        return arguments

    def sceneStep(self):
        arguments = [*self._speciesArguments(), "--out", self.sceneDir(),
                     "--n-micrographs", self.numberOfMicrographs.get(), "--size", self.size.get(),
                     *(["--pixel-size", self.pixelSize.get()] if self.pixelSize.hasValue() else []),
                     "--placement", PLACEMENTS[self.placement.get()],
                     "--ice-thickness", self.iceThickness.get(),
                     "--defocus", self.defocusMin.get(), self.defocusMax.get(), "--dose", self.dose.get(),
                     "--voltage", self.voltage.get(), "--cs", self.sphericalAberration.get(),
                     "--amplitude-contrast", self.amplitudeContrast.get(), "--seed", self.seed.get(),
                     "--device", self._device()]
        arguments += self._extraArguments()
        self._runCryorefine("scene", arguments)

    def createOutputStep(self):
        scene = read_scene(self.sceneDir())
        micrographs = self._createSetOfMicrographs()
        fill_scene_micrographs(micrographs, scene, scene.path, SCENE_MICROGRAPH)
        clean = self._createSetOfMicrographs("clean")
        fill_scene_micrographs(clean, scene, scene.path, SCENE_CLEAN_MICROGRAPH)
        box = self.boxSize.get() or scene.description.largest_species_box
        scene_folder = CryorefineScene(path=self.sceneDir(), samplingRate=scene.description.pixel_size,
                                       boxSize=scene.description.size,
                                       particleBox=box)
        self._defineOutputs(outputMicrographs=micrographs, outputCleanMicrographs=clean, outputScene=scene_folder)
        outputs = [micrographs, clean, scene_folder, *self._defineSceneCoordinatesAndCtf(scene, micrographs, box)]
        for pointer in [*self.inputVolumes, *self.inputAtomStructs]:
            for output in outputs:
                self._defineSourceRelation(pointer, output)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        volumes, structures = self._volumes(), self._atomStructs()
        species_files = (self.speciesFiles.get() or "").split()
        if not (volumes or structures or species_files):
            errors.append("Give at least one species: a map, an atomic structure or a file.")
        for text, count, what in ((self.volumeCopies.get(), len(volumes), "maps"),
                                  (self.atomStructCopies.get(), len(structures), "structures")):
            try:
                copy_numbers(text, count, what)
            except ValueError as exc:
                errors.append(str(exc))
        for structure in structures:
            if not structure.getFileName().lower().endswith(MODEL_SUFFIXES):
                errors.append(f"{structure.getFileName()} is not a PDB or mmCIF file ({', '.join(MODEL_SUFFIXES)}).")
        for spec in species_files:
            path = spec.partition(":")[0]
            if not path.lower().endswith(MAP_SUFFIXES + MODEL_SUFFIXES):
                errors.append(f"Species file {path} is neither a map ({', '.join(MAP_SUFFIXES)}) nor a PDB/mmCIF "
                              "model.")
            elif not os.path.isfile(path):
                errors.append(f"Species file {path} does not exist.")
        if self.size.get() is None or self.size.get() < MIN_SIZE:
            errors.append(f"The micrograph size must be at least {MIN_SIZE} px.")
        if self.pixelSize.hasValue() and self.pixelSize.get() <= 0:
            errors.append("The pixel size must be positive (or empty for the first map's).")
        if self.numberOfMicrographs.get() is None or self.numberOfMicrographs.get() < 1:
            errors.append("Build at least one micrograph.")
        low, high = self.defocusMin.get(), self.defocusMax.get()
        if low is None or high is None or not 0 <= low <= high:
            errors.append("The defocus range must satisfy 0 <= minimum <= maximum (µm).")
        if self.dose.get() is None or self.dose.get() < 0:
            errors.append("The dose cannot be negative (0 for noise-free micrographs).")
        if self.iceThickness.get() is None or self.iceThickness.get() <= 0:
            errors.append("The ice thickness must be positive.")
        if self.boxSize.get() is None or self.boxSize.get() < 0:
            errors.append("The coordinate box cannot be negative (0 for the largest species' box).")
        return errors + self._extraArgumentsProblem()

    def _summary(self):
        if not hasattr(self, "outputMicrographs"):
            return ["Scene not built yet."]
        micrographs = self.outputMicrographs
        return [f"Built {micrographs.getSize()} micrographs ({micrographs.getXDim()} px, "
                f"{micrographs.getSamplingRate():.3f} Å/px) holding {self.outputCoordinates.getSize()} particles."]
