from cryorefine_scipion.protocols.protocol_simulate import ProtCryorefineSimulate
from cryorefine_scipion.protocols.protocol_train import ProtCryorefineTrain
from cryorefine_scipion.protocols.protocol_refine import ProtCryorefineRefine

__all__ = ["ProtCryorefineSimulate", "ProtCryorefineTrain", "ProtCryorefineRefine"]
