"""Names shared by the plugin: site variables, STAR labels, output names."""

from cryorefine.artifacts import ModelFolder, PairsFolder, ParticlesFolder, SceneFolder, TranslatedFolder

PLUGIN_NAME = "cryorefine"  # what Scipion shows before run names and in forms, instead of the module's name

# Site variables (environment or the Scipion config file).
CRYOREFINE_BIN_VAR = "CRYOREFINE_BIN"  # the `cryorefine` executable to call
CRYOREFINE_ENV_ACTIVATION_VAR = "CRYOREFINE_ENV_ACTIVATION"  # e.g. "conda activate cryorefine"

# STAR labels the plugin writes or reads besides the usual RELION ones.
SOURCE_ID_LABEL = "rlnImageId"  # Scipion id of the particle a row came from
SIM_CORRELATION_LABEL = "rlnCryorefineSimCorrelation"  # written by `cryorefine simulate`
SIM_CORRELATION_ATTR = "_cryorefine_simCorrelation"  # the same value on a Scipion particle
SPECIES_ATTR = "_cryorefine_species"  # a scene coordinate's species (rlnCryorefineSpecies)

# Files the engine writes: named by the engine (cryorefine.artifacts), never spelled here.
SIM_STAR, RAW_STAR = PairsFolder.SIM_STAR, PairsFolder.RAW_STAR
PARTICLES_STAR, CLEAN_STAR = ParticlesFolder.PARTICLES_STAR, ParticlesFolder.CLEAN_STAR
CHECKPOINT = ModelFolder.CHECKPOINT
MODEL_PLOTS = (ModelFolder.PANELS_PLOT, ModelFolder.RPSD_PLOT, ModelFolder.LOSSES_PLOT)
SCENE_DESCRIPTION = SceneFolder.DESCRIPTION
SCENE_MICROGRAPH, SCENE_CLEAN_MICROGRAPH = SceneFolder.MICROGRAPH, SceneFolder.CLEAN
SCENE_COORDINATES = SceneFolder.COORDINATES
TRANSLATED_MICROGRAPH = TranslatedFolder.MICROGRAPH

# Files the plugin writes itself.
GENERATED_PLOT = "generated.png"  # a generate run's particles above their clean images
