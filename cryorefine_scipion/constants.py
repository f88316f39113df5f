"""Names shared by the plugin: site variables, STAR labels, output names."""

PLUGIN_NAME = "cryorefine"  # what Scipion shows before run names and in forms, instead of the module's name

# Site variables (environment or the Scipion config file).
CRYOREFINE_BIN_VAR = "CRYOREFINE_BIN"  # the `cryorefine` executable to call
CRYOREFINE_ENV_ACTIVATION_VAR = "CRYOREFINE_ENV_ACTIVATION"  # e.g. "conda activate cryorefine"

# STAR labels the plugin writes or reads besides the usual RELION ones.
SOURCE_ID_LABEL = "rlnImageId"  # Scipion id of the particle a row came from
SIM_CORRELATION_LABEL = "rlnCryorefineSimCorrelation"  # written by `cryorefine simulate`
SIM_CORRELATION_ATTR = "_cryorefine_simCorrelation"  # the same value on a Scipion particle
SPECIES_ATTR = "_cryorefine_species"  # a scene coordinate's species (rlnCryorefineSpecies)

# Files the engine writes (the command line contract).
SIM_STAR = "sim.star"
RAW_STAR = "raw.star"
PARTICLES_STAR = "particles.star"
MODEL_PLOTS = ("panels.png", "rpsd.png", "losses.png")
# `cryorefine scene` and `cryorefine translate apply` (NNN = 000, 001, ... in scene.json's order).
SCENE_DESCRIPTION = "scene.json"
SCENE_MICROGRAPH = "micrograph_{:03d}.mrc"
SCENE_CLEAN_MICROGRAPH = "clean_{:03d}.mrc"
SCENE_COORDINATES = "coords_{:03d}.star"
TRANSLATED_MICROGRAPH = "translated_{:03d}.mrc"

# Files the plugin writes itself.
GENERATED_PLOT = "generated.png"  # a generate run's particles above their clean images
