from cryorefine_scipion.protocols.protocol_simulate import ProtCryorefineSimulate
from cryorefine_scipion.protocols.protocol_train import ProtCryorefineTrain
from cryorefine_scipion.protocols.protocol_refine import ProtCryorefineRefine
from cryorefine_scipion.protocols.protocol_scene import ProtCryorefineScene
from cryorefine_scipion.protocols.protocol_translate import ProtCryorefineTranslate

__all__ = ["ProtCryorefineSimulate", "ProtCryorefineTrain", "ProtCryorefineRefine", "ProtCryorefineScene",
           "ProtCryorefineTranslate"]
