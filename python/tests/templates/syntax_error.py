from duma.model import BaseModel

class Broken(BaseModel)
    pass
