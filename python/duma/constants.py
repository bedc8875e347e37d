"""Names shared with the admin API and with Rafiki templates (``rafiki.constants``)."""


class TaskType:
    IMAGE_CLASSIFICATION = "IMAGE_CLASSIFICATION"
    POS_TAGGING = "POS_TAGGING"
    TABULAR_CLASSIFICATION = "TABULAR_CLASSIFICATION"
    TABULAR_REGRESSION = "TABULAR_REGRESSION"
    SPEECH_RECOGNITION = "SPEECH_RECOGNITION"
    QUESTION_ANSWERING = "QUESTION_ANSWERING"
    OBJECT_DETECTION = "OBJECT_DETECTION"


class ModelDependency:
    """PyPI names of common dependencies, for a model's ``dependencies`` dict."""

    TENSORFLOW = "tensorflow"
    KERAS = "Keras"
    TORCH = "torch"
    TORCHVISION = "torchvision"
    SCIKIT_LEARN = "scikit-learn"
    XGBOOST = "xgboost"
    PANDAS = "pandas"
    NUMPY = "numpy"
    PILLOW = "Pillow"
    SINGA = "singa"


class ModelAccessRight:
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class BudgetOption:
    TIME_HOURS = "TIME_HOURS"
    GPU_COUNT = "GPU_COUNT"
    MODEL_TRIAL_COUNT = "MODEL_TRIAL_COUNT"


class InferenceBudgetOption:
    GPU_COUNT = "GPU_COUNT"


class UserType:
    SUPERADMIN = "SUPERADMIN"
    ADMIN = "ADMIN"
    MODEL_DEVELOPER = "MODEL_DEVELOPER"
    APP_DEVELOPER = "APP_DEVELOPER"


class TrainJobStatus:
    STARTED = "STARTED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERRORED = "ERRORED"


class InferenceJobStatus(TrainJobStatus):
    pass


class TrialStatus:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERRORED = "ERRORED"


# Type aliases Rafiki's client signatures use.
Budget = dict
InferenceBudget = dict
ModelDependencies = dict
