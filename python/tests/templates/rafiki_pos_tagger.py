"""A Rafiki-style POS tagger (Rafiki's imports, unchanged), trained on a corpus zip through the
dataset helpers: each token gets the tag it had most often in training, and an unseen token the
tag that most often followed the previous tag (a bigram fallback). Queries are sentences (lists
of tokens); predictions are lists of tag ids."""

from collections import Counter, defaultdict

from rafiki.model import BaseModel, CategoricalKnob, utils


class RafikiPosTagger(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"case": CategoricalKnob(["lower", "keep"])}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._lower = knobs["case"] == "lower"
        self._tag_of = {}
        self._next_tag = {}
        self._default = 0

    def _key(self, token):
        return token.lower() if self._lower else token

    def train(self, dataset_path, shared_params=None, **train_args):
        corpus = utils.dataset.load_dataset_of_corpus(dataset_path)
        by_token = defaultdict(Counter)
        after = defaultdict(Counter)
        tags = Counter()
        for sentence in corpus:
            previous = -1
            for token, tag in sentence:
                by_token[self._key(token)][tag] += 1
                after[previous][tag] += 1
                tags[tag] += 1
                previous = tag
        self._tag_of = {token: counts.most_common(1)[0][0] for token, counts in by_token.items()}
        self._next_tag = {str(prev): counts.most_common(1)[0][0] for prev, counts in after.items()}
        self._default = tags.most_common(1)[0][0]
        utils.logger.log(f"{len(corpus)} sentences, {len(self._tag_of)} distinct tokens")

    def evaluate(self, dataset_path, **kwargs):
        corpus = utils.dataset.load_dataset_of_corpus(dataset_path)
        right = total = 0
        for sentence in corpus:
            predicted = self._tag([token for token, _ in sentence])
            right += sum(p == tag for p, (_, tag) in zip(predicted, sentence))
            total += len(sentence)
        return right / max(total, 1)

    def predict(self, queries):
        return [self._tag(sentence) for sentence in queries]

    def _tag(self, sentence):
        tags, previous = [], -1
        for token in sentence:
            tag = self._tag_of.get(self._key(token))
            if tag is None:
                tag = self._next_tag.get(str(previous), self._default)
            tags.append(tag)
            previous = tag
        return tags

    def dump_parameters(self):
        return {"tag_of": self._tag_of, "next_tag": self._next_tag, "default": self._default}

    def load_parameters(self, params):
        self._tag_of = params["tag_of"]
        self._next_tag = params["next_tag"]
        self._default = params["default"]
