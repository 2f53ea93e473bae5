"""Prompt guidance: what the model can follow, a default duration, and the optional prompt rewriter.

The Blender panel calls :func:`analyse` on every keystroke to show advice under the prompt box, so this module is
plain Python with precompiled patterns (no torch, no tokenizer). The advice follows the official prompting guide of
HY-Motion 1.0: English, under 60 words, one humanoid body, concrete movements of the limbs and torso; not supported
are several people, animals or non-humanoids, clothing / appearance / emotions, objects, scenes and camera angles,
seamless loops and in-place animation. Warnings never block generation: they say what will probably go wrong.

The rewriter talks to an OpenAI-compatible chat endpoint the user configured (for instance Text2MotionPrompter served
by vLLM or llama.cpp). It is off unless configured, and every failure falls back to the user's own prompt.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import threading
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from .jobs import ADVISED_MAX_WORDS, MAX_DURATION, MIN_DURATION
from .skeleton import FPS

MAX_TEXT_TOKENS = 128
WORDS_AT_TOKEN_LIMIT = 90
"""English prompts average about 1.4 Qwen tokens per word, so text past roughly this many words is cut."""

SECONDS_BEFORE_FIRST_ACTION = 1.0
SECONDS_PER_ACTION = 2.0
SLOW_FACTOR = 1.4
FAST_FACTOR = 0.8
MAX_REPEATS = 6

PROMPTER_URL_ENV = "HYMOTION_PROMPTER_URL"
PROMPTER_MODEL_ENV = "HYMOTION_PROMPTER_MODEL"
PROMPTER_KEY_ENV = "HYMOTION_PROMPTER_KEY"
PROMPTER_TIMEOUT_S = 10.0
MAX_REPLY_BYTES = 1 << 20
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HYMOTION_OFFLINE")

# Warning codes: stable, the add-on and tests match on them.
TOO_LONG = "too_long"
NON_ENGLISH = "non_english"
MULTI_PERSON = "multi_person"
NON_HUMANOID = "non_humanoid"
CAMERA = "camera"
SCENE = "scene"
APPEARANCE = "appearance"
EMOTION_ONLY = "emotion_only"
FACE_OR_FINGERS = "face_or_fingers"
LOOP = "loop"
IN_PLACE = "in_place"
NO_ACTION = "no_action"


@dataclass(frozen=True)
class PromptNote:
    """One piece of advice: ``code`` is stable, ``message`` says what is wrong, ``suggestion`` what to write instead."""

    code: str
    message: str
    suggestion: str


@dataclass(frozen=True)
class DurationSuggestion:
    seconds: float
    action_count: int
    explanation: str


@dataclass
class PromptAdvice:
    prompt: str
    word_count: int
    warnings: list[PromptNote] = field(default_factory=list)
    hints: list[PromptNote] = field(default_factory=list)
    duration: DurationSuggestion | None = None

    @property
    def codes(self) -> list[str]:
        return [note.code for note in self.warnings + self.hints]

    @property
    def length_line(self) -> str:
        """The line the panel shows under the prompt box, e.g. "12 words (best under 60)"."""
        unit = "word" if self.word_count == 1 else "words"
        return f"{self.word_count} {unit} (best under {ADVISED_MAX_WORDS}, English)"


def _words_pattern(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


def _verb_forms(verb: str) -> str:
    """A regex for a regular English verb and its -s / -ed / -ing forms (doubled consonant and dropped e included)."""
    if " " in verb or "-" in verb:
        head, _, rest = verb.partition(" ") if " " in verb else verb.partition("-")
        joiner = r"\s+" if " " in verb else "[- ]?"
        return _verb_forms(head) + joiner + re.escape(rest)
    if verb.endswith("e"):
        return verb[:-1] + "(?:e|es|ed|ing)"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "(?:y|ies|ied|ying)"
    last = verb[-1]
    return verb + f"(?:s|es|ed|ing|{last}ed|{last}ing)?"


_ACTION_VERBS = (
    "walk", "run", "jog", "sprint", "dash", "jump", "hop", "skip", "leap", "bound", "sit", "stand", "squat", "kneel",
    "crouch", "crawl", "climb", "lie", "lay", "roll", "turn", "spin", "twirl", "rotate", "pivot", "wave", "raise",
    "lift", "lower", "bend", "stretch", "reach", "point", "kick", "punch", "throw", "toss", "catch", "push", "pull",
    "swing", "dance", "step", "stride", "march", "stomp", "tiptoe", "limp", "stagger", "stumble", "trip", "fall",
    "slip", "sneak", "creep", "shuffle", "strut", "pace", "wander", "stroll", "balance", "lean", "twist", "swim",
    "box", "fight", "strike", "stab", "slash", "block", "dodge", "duck", "parry", "grab", "pick", "put",
    "drop", "carry", "hold", "shrug", "nod", "shake", "clap", "salute", "bow", "curtsy", "cartwheel", "flip",
    "somersault", "handstand", "backflip", "lunge", "exercise", "pose", "gesture", "scratch", "rub", "wipe",
    "sweep", "mop", "drink", "eat", "pour", "open", "knock", "paddle", "row", "skate", "surf", "dribble", "shoot",
    "aim", "serve", "pitch", "bounce", "juggle", "celebrate", "cheer", "flex", "sway", "rock", "wiggle", "bob",
    "hunch", "slump", "collapse", "faint", "get up", "rise", "vault", "hurdle", "slide", "glide", "tumble", "stoop",
    "straighten", "arch", "hug", "embrace", "fold", "cross", "cover", "touch", "tap", "stir", "chop", "hammer",
    "dig", "shovel", "rake", "paint", "play", "strum", "drum", "pass", "swat", "flail", "shiver", "tremble",
    "yawn", "sneeze", "cough", "mount", "dismount", "ride", "pedal", "tie", "brush", "comb", "clean",
    "wash", "type", "write", "draw", "swipe", "mime", "conduct", "skateboard", "ski", "warm-up", "work out",
    "look around", "look up", "look down", "look back", "look over", "clasp", "extend", "retract", "flap", "circle",
)
_IRREGULAR_ACTIONS = (
    "ran", "sat", "stood", "fell", "fallen", "caught", "held", "threw", "thrown", "swung", "lying", "lain", "laid",
    "rose", "risen", "got up", "gets up", "struck", "stuck", "dove", "dived", "swam", "rode", "slid", "crept", "strode",
    "knelt", "leapt", "shook", "drew", "wrote", "took", "takes", "take", "taking", "goes up", "goes down",
    "jumping jacks", "push-ups?", "sit-ups?", "pull-ups?", "burpees?", "tai chi", "kung fu", "karate", "yoga",
    "boxing", "squats?", "lunges?",
)
_ACTION_ALTERNATIVES = {_verb_forms(verb) for verb in _ACTION_VERBS} | set(_IRREGULAR_ACTIONS)
_ACTION = re.compile(r"\b(?:" + "|".join(sorted(_ACTION_ALTERNATIVES, key=len, reverse=True)) + r")\b", re.IGNORECASE)

_MULTI_PERSON = [
    re.compile(
        r"\b(?:two|three|four|five|six|several|many|multiple|some|a group of|a pair of|a couple of|a few|\d+)\s+"
        r"(?:people|persons|men|women|dancers|players|kids|children|friends|fighters|boxers|guys|girls|boys|"
        r"figures|characters|soldiers|athletes|opponents)\b",
        re.IGNORECASE,
    ),
    _words_pattern(
        r"people", r"crowd", r"partners?", r"opponents?", r"teammates?", r"each other", r"one another",
        r"together with", r"someone else", r"somebody else", r"both of them",
        r"another (?:person|man|woman|dancer|player|character|boy|girl|kid|child|fighter)",
        r"the other (?:person|man|woman|one|dancer|player)",
        r"with (?:a|his|her|their|the) (?:friend|partner|child|kid|son|daughter|wife|husband|girlfriend|boyfriend|"
        r"opponent|teammate|mother|father|baby)",
        r"(?:a|the) (?:man|woman|boy|girl|person) and (?:a|the|another|his|her) (?:man|woman|boy|girl|person|friend)",
        r"shakes? hands with", r"high[- ]fives?",
        r"(?:hug|kiss|push|punch|kick|slap|tackle|carry|carrie|lift|greet|chase|fight|wrestle|hit)(?:s|es|ed|ing)?"
        r" (?:him|them|someone|somebody|a (?:friend|man|woman|child|kid|boy|girl|person))",
    ),
]

_ANIMALS = _words_pattern(
    r"dogs?", r"pupp(?:y|ies)", r"cats?", r"kittens?", r"horses?", r"ponies", r"pony", r"cows?", r"sheep", r"pigs?",
    r"goats?", r"birds?", r"chickens?", r"fish", r"snakes?", r"lizards?", r"frogs?", r"rabbits?", r"bunn(?:y|ies)",
    r"mice", r"rats?", r"squirrels?", r"monkeys?", r"apes?", r"gorillas?", r"elephants?", r"giraffes?", r"lions?",
    r"tigers?", r"bears?", r"wol(?:f|ves)", r"fox(?:es)?", r"deer", r"kangaroos?", r"dinosaurs?",
    r"dragons?", r"insects?", r"spiders?", r"bees?", r"butterfl(?:y|ies)", r"crabs?", r"octopus(?:es)?",
    r"sharks?", r"whales?", r"dolphins?", r"penguins?", r"animals?", r"creatures?", r"quadrupeds?", r"four[- ]legged",
    r"tentacles?", r"its tail", r"wags? (?:its|the) tail", r"paws?", r"hooves", r"flaps? its wings", r"cars?",
    r"vehicles?", r"trucks?",
)
_IMITATION = re.compile(
    r"(?:(?:like|as|imitat\w*|pretend\w* to be|mimic\w*)\s+(?:an?|the|some)?\s*(?:\w+\s+)?"
    r"|(?:downward|upward|cat)[- ])$",
    re.IGNORECASE,
)
_EXERCISE_NAME = re.compile(
    r"^[- ](?:pose|stance|walk|crawl|jumps?|kicks?|stroke|stretch|dance|style|position|cow)\b", re.IGNORECASE
)

_CAMERA = _words_pattern(
    r"cameras?", r"close[- ]?ups?", r"zoom(?:s|ed|ing)?(?: in| out)?", r"wide shot", r"long shot", r"tracking shot",
    r"(?:low|high|camera|side|front|top|overhead) angle", r"(?:side|front|top|rear|back|aerial) view",
    r"bird'?s[- ]eye", r"pov", r"point of view", r"first[- ]person", r"third[- ]person", r"cinematic",
    r"pans? (?:left|right|across|around)", r"dolly", r"footage", r"filmed", r"on screen", r"in frame", r"shot from",
)
_PLACES = (
    r"forest|woods|park|room|kitchen|bedroom|living room|office|street|city|beach|field|garden|gym|stadium|arena|"
    r"stage|desert|jungle|mountain|castle|house|building|restaurant|nightclub|classroom|hallway|corridor|alley|"
    r"garage|warehouse|church|temple|library|market|shop|store|mall|village|town|island|ocean|sea|lake|river|"
    r"meadow|battlefield|spaceship|cave|studio|school|playground|courtyard|bathroom|hospital"
)
_SCENE = [
    re.compile(
        r"\b(?:in|on|at|inside|through|across|into|around) (?:a|an|the)\s+(?:\w+\s+)?(?:" + _PLACES + r")\b",
        re.IGNORECASE,
    ),
    _words_pattern(
        r"background", r"foreground", r"scenery", r"landscape", r"lighting", r"lit by", r"sunlight", r"sunset",
        r"sunrise", r"moonlight", r"at night", r"in the rain", r"in the snow", r"weather", r"fog(?:gy)?", r"misty",
        r"neon", r"spotlight",
    ),
]
_APPEARANCE = _words_pattern(
    r"wearing", r"wears", r"dressed(?: in| as| up)?", r"dress", r"(?:t-)?shirt", r"jacket", r"coat", r"hat", r"cap",
    r"hoodie", r"pants", r"trousers", r"jeans", r"skirt", r"shorts", r"shoes", r"sneakers", r"boots",
    r"uniform", r"suit", r"armou?r", r"costume", r"cloak", r"cape", r"scarf", r"(?:sun)?glasses", r"backpack",
    r"necklace", r"tall", r"fat", r"thin", r"skinny", r"slim", r"muscular", r"chubby", r"beautiful",
    r"handsome", r"pretty", r"ugly", r"blonde?", r"brunette", r"red-haired",
    r"(?:long|short|blond|blonde|red|black|brown|curly|grey|gray|white) hair", r"beard(?:ed)?", r"mustache",
    r"(?:blue|green|brown|grey|gray) eyes", r"tattoo(?:s|ed)?", r"appearance", r"outfit", r"clothes", r"clothing",
)
_EMOTION = _words_pattern(
    r"happy", r"sad", r"angry", r"excited", r"nervous", r"scared", r"afraid", r"frightened", r"joyful", r"depressed",
    r"anxious", r"proud", r"confident", r"bored", r"lonely", r"frustrated", r"upset", r"calm", r"worried",
    r"furious", r"cheerful", r"gloomy", r"melancholy", r"emotions?", r"emotional", r"feel(?:s|ing)?", r"mood",
    r"heartbroken", r"in love", r"jealous", r"grief", r"joy", r"sorrow", r"fear", r"anger",
)
_FACE_OR_FINGERS = _words_pattern(
    r"smil(?:e|es|ed|ing)", r"frown(?:s|ed|ing)?", r"wink(?:s|ed|ing)?", r"blink(?:s|ed|ing)?",
    r"grin(?:s|ned|ning)?", r"facial expressions?", r"eyebrows?", r"fingers?", r"thumbs? up", r"makes? a fist",
    r"lips?", r"mouth", r"tongue",
)
_LOOP = _words_pattern(
    r"loop(?:s|ed|ing|able)?", r"seamless(?:ly)?", r"cycl(?:e|es|ic|ical)", r"repeat(?:s|ing)? (?:forever|endlessly)",
    r"endless(?:ly)?", r"forever", r"infinite(?:ly)?", r"over and over",
)
_IN_PLACE = _words_pattern(
    r"in[- ]place", r"on the spot", r"(?:on )?(?:a|the) treadmill", r"treadmill", r"stationary",
    r"without (?:moving|travell?ing|going) (?:forward|anywhere|away)", r"root motion", r"no root",
)

_NON_LATIN_LETTER_START = 0x250
_FOREIGN_WORDS = frozenset(
    "una uno persona el los las y con del se une personne les des et avec dans sur eine einer ein und der die das "
    "mit ist sich auf il di che della um uma pessoa com não het een zijn voor och jest się że".split()
)
_ENGLISH_WORDS = frozenset(
    "a an the person man woman and with his her their then while he she they is are to of in on up down forward "
    "back left right".split()
)

_CLAUSE_SEPARATOR = re.compile(
    r"(,|;|\.|!|\?|\band then\b|\bthen\b|\bafterwards?\b|\bafter that\b|\bafter\b|\bbefore\b|\bfollowed by\b|"
    r"\bnext\b|\bfinally\b|\band\b|\bwhile\b|\bmeanwhile\b|\bat the same time\b|\bas he\b|\bas she\b|\bas they\b)",
    re.IGNORECASE,
)
_SIMULTANEOUS = frozenset({"while", "meanwhile", "at the same time", "as he", "as she", "as they"})
_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_REPEATS = re.compile(
    r"\b(?:(?P<twice>twice)|(?P<thrice>thrice)|(?P<count>\d+|two|three|four|five|six|seven|eight|nine|ten)\s+times|"
    r"(?P<several>several times|a few times|repeatedly|many times|multiple times))\b",
    re.IGNORECASE,
)
_SLOW = _words_pattern(r"slowly", r"slow", r"gradually", r"carefully", r"gently", r"leisurely")
_FAST = _words_pattern(r"quickly", r"quick", r"fast", r"rapidly", r"briskly", r"swiftly", r"suddenly")

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def count_words(prompt: str) -> int:
    return len(_WORD.findall(prompt))


def analyse(prompt: str) -> PromptAdvice:
    """Advice for one prompt; cheap enough to run on every keystroke."""
    text = " ".join(prompt.split())
    words = _WORD.findall(text)
    advice = PromptAdvice(prompt=prompt, word_count=len(words))
    if not words:
        advice.duration = explain_duration(text)
        return advice
    has_action = bool(_ACTION.search(text))
    warn = advice.warnings.append

    if len(words) > WORDS_AT_TOKEN_LIMIT:
        warn(PromptNote(
            TOO_LONG,
            f"{len(words)} words: the text encoder reads at most {MAX_TEXT_TOKENS} tokens (about "
            f"{WORDS_AT_TOKEN_LIMIT} English words), so the end of this prompt is cut off.",
            f"Keep it under {ADVISED_MAX_WORDS} words: describe the main movements only, or split it into "
            "separate prompts and join the clips in the NLA editor.",
        ))
    elif len(words) > ADVISED_MAX_WORDS:
        warn(PromptNote(
            TOO_LONG,
            f"{len(words)} words: the model follows prompts best under {ADVISED_MAX_WORDS} words.",
            "Drop details that are not movements (looks, setting, feelings) and keep the actions in order.",
        ))
    if _looks_non_english(text, words):
        warn(PromptNote(
            NON_ENGLISH,
            "The prompt does not look like English; the model was trained on English descriptions.",
            "Write it in English, e.g. \"a person walks forward, then waves\", or configure the prompt rewriter "
            "(Text2MotionPrompter), which translates.",
        ))
    if any(pattern.search(text) for pattern in _MULTI_PERSON):
        warn(PromptNote(
            MULTI_PERSON,
            "The model animates one person; interaction between several people is not supported.",
            "Describe one person's movement, e.g. \"a person reaches forward and hugs\" instead of \"two people "
            "hug\", and generate each character separately.",
        ))
    if _mentions_non_humanoid(text):
        warn(PromptNote(
            NON_HUMANOID,
            "Animals, vehicles and non-human creatures are not supported: the model only moves a human skeleton.",
            "Describe what a person's body does, e.g. \"a person crawls on all fours\" or \"a person walks like a "
            "penguin\".",
        ))
    if _CAMERA.search(text):
        warn(PromptNote(
            CAMERA,
            "Camera angles, shots and framing are ignored: the model makes body motion, not a video.",
            "Remove the camera words and set up the camera in Blender.",
        ))
    if any(pattern.search(text) for pattern in _SCENE):
        warn(PromptNote(
            SCENE,
            "The place, lighting and surroundings are not modelled; the motion happens on flat, empty ground.",
            "Describe only the movement; terrain that matters can be named as movement (\"climbs up a slope\", "
            "\"steps up onto a box\").",
        ))
    if _APPEARANCE.search(text):
        if has_action:
            message = "Clothing and physical appearance are not modelled and will be ignored."
        else:
            message = "This describes how the person looks, not how they move; the model has nothing to animate."
        warn(PromptNote(
            APPEARANCE, message,
            "Describe movement of the limbs and torso, e.g. \"a person walks forward swinging both arms\".",
        ))
    if not has_action and _EMOTION.search(text):
        warn(PromptNote(
            EMOTION_ONLY,
            "A feeling alone gives the model no movement to make.",
            "Show the feeling through the body, e.g. \"a person walks slowly with slumped shoulders\" or \"a person "
            "jumps up and pumps both fists\".",
        ))
    if _FACE_OR_FINGERS.search(text):
        warn(PromptNote(
            FACE_OR_FINGERS,
            "Faces and fingers are not animated: the model drives the 22 body joints (down to the wrists).",
            "Keep the body movement (\"raises the right hand\") and key the face or fingers by hand in Blender.",
        ))
    if _LOOP.search(text):
        warn(PromptNote(
            LOOP,
            "Seamless loops are not supported: each clip starts and ends in its own pose.",
            "Ask for the repeated motion (\"a person walks forward for several steps\") and cut a cycle from the "
            "baked action in Blender (NLA strip repeat, or Cycles modifier on the F-curves).",
        ))
    if _IN_PLACE.search(text):
        warn(PromptNote(
            IN_PLACE,
            "The model has no in-place mode: a travelling motion still moves the body through space.",
            "Describe the motion normally and turn on the add-on's \"In Place\" option, which removes the "
            "horizontal root travel when the clip is baked.",
        ))
    explains_no_action = {APPEARANCE, EMOTION_ONLY, NON_ENGLISH} & {note.code for note in advice.warnings}
    if not has_action and not explains_no_action:
        advice.hints.append(PromptNote(
            NO_ACTION,
            "No concrete body action found; the model follows movements of the limbs and torso best.",
            "Start with a person and a verb, e.g. \"a person jumps forward, then turns left and waves\".",
        ))
    advice.duration = explain_duration(text)
    return advice


def _looks_non_english(text: str, words: list[str]) -> bool:
    if any(unicodedata.category(char).startswith("L") and ord(char) >= _NON_LATIN_LETTER_START for char in text):
        return True
    lowered = [word.lower() for word in words]
    foreign = sum(word in _FOREIGN_WORDS for word in lowered)
    english = sum(word in _ENGLISH_WORDS for word in lowered)
    accented = sum(1 for char in text if "À" <= char <= "ɏ")
    return foreign + accented >= 2 and foreign + accented > english


def _mentions_non_humanoid(text: str) -> bool:
    """An animal word counts unless a person imitates it ("walks like a penguin") or it names an exercise
    ("bear crawl", "downward dog", "cat-cow")."""
    for match in _ANIMALS.finditer(text):
        before = text[max(0, match.start() - 40):match.start()]
        after = text[match.end():match.end() + 12]
        if not _IMITATION.search(before) and not _EXERCISE_NAME.search(after):
            return True
    return False


def suggest_duration(prompt: str) -> float:
    """Default clip length in seconds for a prompt whose duration the user left empty."""
    return explain_duration(prompt).seconds


def duration_for(prompt: str, own: float | None = None, default: float | None = None) -> float:
    """The duration rule of a prompt line, for every command and the add-on: the line's own seconds ("4.5 | ..."),
    else the run's default (None or 0: Auto), else an estimate from the prompt (:func:`suggest_duration`)."""
    if own is not None:
        return own
    if default:
        return default
    return suggest_duration(prompt)


def explain_duration(prompt: str) -> DurationSuggestion:
    """Seconds from the actions described in order: about two seconds each, stretched by "slowly", shortened by
    "quickly", multiplied by "twice" / "three times"; actions joined by "while" overlap and add nothing."""
    pieces = _CLAUSE_SEPARATOR.split(" ".join(prompt.split()))
    weighted = 0.0
    labels: list[str] = []
    action_count = 0
    for index in range(0, len(pieces), 2):
        clause = pieces[index]
        separator_before = pieces[index - 1].lower() if index else ""
        verbs = _ACTION.findall(clause)
        if not verbs or separator_before in _SIMULTANEOUS:
            continue
        repeats = _repeat_count(clause)
        speed = SLOW_FACTOR if _SLOW.search(clause) else FAST_FACTOR if _FAST.search(clause) else 1.0
        weighted += repeats * speed
        action_count += repeats
        labels.append(verbs[0].lower() + (f" x{repeats}" if repeats > 1 else ""))

    raw = SECONDS_BEFORE_FIRST_ACTION + SECONDS_PER_ACTION * (weighted if action_count else 1.0)
    seconds = min(max(round(raw, 1), MIN_DURATION), MAX_DURATION)
    if not action_count:
        explanation = f"No action recognised: {seconds:g} s, the length of one short action."
    else:
        plural = "s" if action_count != 1 else ""
        explanation = f"{action_count} action{plural} ({', '.join(labels)}): {seconds:g} s"
        if raw > MAX_DURATION:
            explanation += f" (capped at the model's {MAX_DURATION:g} s; split the prompt for longer motion)"
        explanation += "."
    return DurationSuggestion(seconds=seconds, action_count=action_count, explanation=explanation)


def _repeat_count(clause: str) -> int:
    match = _REPEATS.search(clause)
    if not match:
        return 1
    if match["twice"]:
        return 2
    if match["thrice"]:
        return 3
    if match["several"]:
        return 3
    count = match["count"].lower()
    number = int(count) if count.isdigit() else _NUMBER_WORDS[count]
    return max(1, min(number, MAX_REPEATS))


@dataclass(frozen=True)
class RewrittenPrompt:
    prompt: str
    duration: float
    endpoint: str


_REWRITE_INSTRUCTIONS = """You prepare text prompts for a text-to-motion model that animates one human skeleton.
Read the action description below and answer with a JSON object only (no Markdown, no other text):
{{"duration": <integer number of frames at 30 fps that the described motion takes when performed naturally>,
 "short_caption": "<the description as one clear, grammatical English sentence>"}}
Keep every movement, its order and every direction or side (left, right, upward, quickly); add nothing that is not in
the description, and translate it to English if it is written in another language.

Action description:
{prompt}"""


def prompter_configured(base_url: str | None = None, model: str | None = None) -> bool:
    return bool((base_url or os.environ.get(PROMPTER_URL_ENV)) and (model or os.environ.get(PROMPTER_MODEL_ENV)))


def endpoint_is_local(base_url: str) -> bool:
    """True for loopback endpoints, which the add-on may use even when Blender's online access is off."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def offline_requested() -> bool:
    """HF_HUB_OFFLINE or HYMOTION_OFFLINE set to a true value: the backend contacts nothing off this machine."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in OFFLINE_ENVS)


def rewrite_prompt(
    prompt: str,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = PROMPTER_TIMEOUT_S,
    online: bool | None = None,
) -> tuple[RewrittenPrompt | None, str]:
    """Ask the configured prompter to rewrite ``prompt`` and estimate its duration.

    Returns ``(result, "")`` on success and ``(None, reason)`` otherwise: unset, unreachable, slow or nonsensical
    endpoints are normal (the feature is optional), so nothing here raises; the caller keeps the user's prompt.
    Only http(s) endpoints are asked; ``online`` False (default: not offline_requested(), the add-on passes Blender's
    online access) allows loopback endpoints only. The whole exchange ends within ``timeout`` seconds, an answer
    over MAX_REPLY_BYTES is refused, and redirects are not followed, so the key never reaches another host.
    """
    base_url = (base_url or os.environ.get(PROMPTER_URL_ENV, "")).strip()
    model = (model or os.environ.get(PROMPTER_MODEL_ENV, "")).strip()
    api_key = api_key or os.environ.get(PROMPTER_KEY_ENV, "")
    if not base_url or not model:
        return None, (
            f"prompt rewriter not configured (set {PROMPTER_URL_ENV} to an OpenAI-compatible base URL such as "
            f"http://127.0.0.1:8000/v1 and {PROMPTER_MODEL_ENV} to the served model name)"
        )
    if not prompt.strip():
        return None, "empty prompt"
    url = base_url.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, f"prompt rewriter URL {base_url} is not an http:// or https:// address"
    if not (not offline_requested() if online is None else online) and not endpoint_is_local(url):
        return None, f"offline: the prompt rewriter at {url} is not on this machine, so it is not asked"
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": _REWRITE_INSTRUCTIONS.format(prompt=prompt.strip())}],
        "temperature": 0.0,
    }).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        status, answer = _post(parts, body, headers, timeout)
    except TimeoutError:
        return None, f"prompt rewriter at {url} unreachable (no whole answer within {timeout:g} s)"
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        return None, f"prompt rewriter at {url} unreachable ({reason})"
    if 300 <= status < 400:
        return None, f"prompt rewriter at {url} answered HTTP {status} (a redirect); set {PROMPTER_URL_ENV} to the " \
            "final address (redirects are not followed, so the key stays with the host you named)"
    if status != 200:
        return None, f"prompt rewriter at {url} answered HTTP {status}"
    if len(answer) > MAX_REPLY_BYTES:
        return None, f"prompt rewriter at {url} answered more than {MAX_REPLY_BYTES} bytes"
    try:
        payload = json.loads(answer.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, f"prompt rewriter at {url} did not answer JSON"
    except RecursionError:  # a reply nested thousands of levels deep
        return None, f"prompt rewriter at {url} answered JSON nested too deeply to read"
    return _parse_rewrite(payload, url)


def _post(parts: urllib.parse.SplitResult, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """One POST whose whole exchange (connect, send, headers, body) ends by ``timeout``: a timer shuts the socket at
    the deadline, so a server that trickles bytes cannot hold it. Reads at most MAX_REPLY_BYTES + 1 bytes."""
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    host = parts.hostname
    assert host is not None  # rewrite_prompt refuses a URL without a host before it posts
    connection = connection_class(host, parts.port, timeout=timeout)
    expired = threading.Event()
    connected: list[socket.socket] = []

    def expire() -> None:
        expired.set()
        for sock in connected:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    deadline = threading.Timer(timeout, expire)
    deadline.daemon = True
    deadline.start()
    try:
        connection.connect()
        connected.append(connection.sock)  # kept: http.client drops its own reference once the response is read
        if expired.is_set():
            raise TimeoutError
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(MAX_REPLY_BYTES + 1)
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError from None
        raise
    finally:
        deadline.cancel()
        connection.close()
    if expired.is_set():
        raise TimeoutError
    return response.status, answer


def _parse_rewrite(payload: object, url: str) -> tuple[RewrittenPrompt | None, str]:
    try:
        content = payload["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None, f"prompt rewriter at {url} answered without a chat message"
    if not isinstance(content, str):
        return None, f"prompt rewriter at {url} answered without text"
    content = re.sub(r"<think>.*?</think>", "", content, flags=re.DOTALL)
    start, end = content.find("{"), content.rfind("}")
    try:
        answer = json.loads(content[start:end + 1]) if 0 <= start < end else None
    except ValueError:
        answer = None
    except RecursionError:
        return None, f"prompt rewriter at {url} answered a message nested too deeply to read"
    if not isinstance(answer, dict):
        return None, f"prompt rewriter at {url} did not answer a JSON object"
    caption = answer.get("short_caption")
    frames = answer.get("duration")
    if not isinstance(caption, str) or not caption.strip():
        return None, f"prompt rewriter at {url} gave no short_caption"
    if isinstance(frames, bool) or not isinstance(frames, (int, float)) or not frames > 0:
        return None, f"prompt rewriter at {url} gave no usable duration ({frames!r})"
    seconds = round(min(max(frames / FPS, MIN_DURATION), MAX_DURATION), 2)
    return RewrittenPrompt(prompt=" ".join(caption.split()), duration=seconds, endpoint=url), ""
