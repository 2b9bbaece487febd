"""Inputs of ``bench/backtranslate.py``, written for it: a Stack Exchange site of 200 questions with
their answers (``Posts.xml`` in the dump's layout) and a few dozen seed pairs.

Every question is one topic seen from one angle; its answer combines the topic's facts with what
that angle asks for, so a good backward model can recover the question from the answer (the
card's similarity figure) while a random other question shares at most the angle or the topic.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

# topic, then three facts about it (written for this fixture)
TOPICS = [
    (
        "a cast-iron skillet",
        "Seasoning is a layer of oil baked into a hard polymer on the metal.",
        "Soap does little harm to a well-seasoned pan; long soaking in water is what causes rust.",
        "Heating the empty pan for a few minutes before adding food gives an even sear.",
    ),
    (
        "sourdough starter",
        "A starter is a culture of wild yeast and lactic acid bacteria living in flour and water.",
        "Feeding it equal weights of flour and water keeps the culture active and predictable.",
        "A starter that doubles within six hours of feeding is strong enough to raise bread.",
    ),
    (
        "houseplant watering",
        "Most houseplants die from too much water rather than too little.",
        "Pushing a finger into the soil shows whether the top few centimetres are dry.",
        "Pots without drainage holes trap water around the roots, which then rot.",
    ),
    (
        "a bicycle chain",
        "A dry chain wears the cassette and chainrings much faster than a clean, oiled one.",
        "Oil belongs on the rollers, one drop each, with the excess wiped off the outside.",
        "A chain checker tool shows stretch; replacing a worn chain early saves the gears.",
    ),
    (
        "interval running",
        "Intervals alternate hard efforts with easy recovery so the body adapts to speed.",
        "A common session is six repeats of three minutes hard with two minutes of jogging.",
        "Running intervals more than twice a week raises the risk of injury for most people.",
    ),
    (
        "compost",
        "Compost needs a mix of green material rich in nitrogen and brown material rich in carbon.",
        "A pile that smells of ammonia has too much green matter and needs dry leaves or cardboard.",
        "Turning the pile every week or two lets air in and speeds up decomposition.",
    ),
    (
        "git branches",
        "A branch in git is only a movable pointer to a commit, so creating one is cheap.",
        "Rebasing rewrites commits, so it suits local work that nobody else has pulled yet.",
        "Merging keeps the history exactly as it happened, including the merge commit itself.",
    ),
    (
        "Python virtual environments",
        "A virtual environment is a folder with its own interpreter link and installed packages.",
        "Each project gets its own environment so that package versions never clash.",
        "The requirements can be frozen to a file so that another machine installs the same versions.",
    ),
    (
        "SQL indexes",
        "An index is a sorted structure that lets the database find rows without scanning the table.",
        "Every index speeds up reads on its columns but slows down inserts and updates.",
        "A query plan shows whether the database actually used the index for a given query.",
    ),
    (
        "bread proofing",
        "Proofing is the final rise that fills the dough with gas before baking.",
        "A gently pressed dough that springs back slowly is ready for the oven.",
        "Over-proofed dough collapses in the oven because the gluten can no longer hold the gas.",
    ),
    (
        "knife sharpening",
        "A whetstone removes metal to form a new edge at a steady angle.",
        "Most kitchen knives are sharpened at about fifteen to twenty degrees per side.",
        "A honing steel only straightens a rolled edge; it does not remove metal.",
    ),
    (
        "tomato plants",
        "Tomatoes need at least six hours of direct sun to set fruit well.",
        "Watering at the base in the morning keeps the leaves dry and limits blight.",
        "Side shoots that grow between the stem and a branch can be pinched off on vine types.",
    ),
    (
        "home wifi",
        "A router placed in the centre of the home and off the floor covers more rooms.",
        "Thick walls and large metal objects weaken the signal more than distance alone.",
        "The five gigahertz band is faster at short range; the lower band reaches further.",
    ),
    (
        "learning a language",
        "Short daily practice builds vocabulary better than long weekly sessions.",
        "Spaced repetition brings each word back just before it would be forgotten.",
        "Speaking early, even with mistakes, trains listening and pronunciation together.",
    ),
    (
        "credit scores",
        "Payment history is the largest single part of most credit scores.",
        "Using a small share of the available credit limit helps the score.",
        "Checking one's own report does not lower the score, unlike a lender's hard inquiry.",
    ),
    (
        "coffee brewing",
        "Water just off the boil, around ninety to ninety-five degrees, extracts coffee well.",
        "A finer grind extracts faster, so it suits short brewing methods like espresso.",
        "Sour coffee is usually under-extracted, while bitter coffee is usually over-extracted.",
    ),
    (
        "bird feeders",
        "Black sunflower seed attracts the widest range of garden birds.",
        "Feeders need regular cleaning because mouldy seed spreads disease among birds.",
        "Placing a feeder near cover but out of reach of cats keeps birds safe.",
    ),
    (
        "electric car batteries",
        "Lithium-ion batteries age fastest when kept full or empty for long periods.",
        "Daily charging to about eighty percent is gentle on the cells.",
        "Cold weather reduces range because the battery and cabin both need heating.",
    ),
    (
        "unit tests",
        "A unit test checks one small piece of code in isolation from the rest.",
        "Tests that run in milliseconds get run often, which is what makes them useful.",
        "A failing test should name what broke clearly enough to fix it without a debugger.",
    ),
    (
        "rice cooking",
        "Rinsing rice removes surface starch that would make the grains sticky.",
        "Long-grain white rice usually takes about one and a half parts water to one part rice.",
        "Letting cooked rice rest covered for ten minutes evens out the moisture.",
    ),
    (
        "public speaking",
        "Practising the talk aloud several times matters more than memorising a script.",
        "A slower pace and short pauses make a speaker sound more confident.",
        "Opening with a concrete example holds attention better than an agenda slide.",
    ),
    (
        "dog training",
        "Rewarding the wanted behaviour within a second or two helps a dog connect the two.",
        "Short sessions of five to ten minutes work better than one long session.",
        "Consistent words for each command keep the dog from getting confused.",
    ),
    (
        "password managers",
        "A password manager lets every site have a long, unique, random password.",
        "The one master password must be strong because it protects all the others.",
        "Turning on two-factor authentication adds protection if the master password leaks.",
    ),
    (
        "paint for walls",
        "Matte paint hides flaws in a wall but marks more easily than eggshell or satin.",
        "Primer seals patched areas so the top coat dries to an even sheen.",
        "Two thin coats give a more even finish than one thick coat.",
    ),
    (
        "sleep habits",
        "Going to bed and waking at the same times each day steadies the body clock.",
        "Bright screens late in the evening can delay the feeling of sleepiness.",
        "A cool, dark and quiet bedroom makes deep sleep more likely.",
    ),
]

# angle: (question template, opening of the answer, closing of the answer)
ANGLES = [
    (
        "What should a beginner know about {t}?",
        "A few basics cover most of what matters with {t}.",
        "Starting with these points avoids most early frustration.",
    ),
    (
        "What are common mistakes with {t}?",
        "Most problems with {t} come from a handful of habits.",
        "Avoiding these mistakes makes the results far more reliable.",
    ),
    (
        "How do you take care of {t}?",
        "Looking after {t} is mostly a matter of routine.",
        "A short routine, kept up regularly, does more than occasional big efforts.",
    ),
    (
        "Why does {t} behave the way it does?",
        "The behaviour of {t} follows from a few simple causes.",
        "Once the causes are clear, the usual advice makes sense.",
    ),
    (
        "What is the best way to get started with {t}?",
        "Getting started with {t} takes less than it seems.",
        "After a few weeks these steps become second nature.",
    ),
    (
        "How can I get better results with {t}?",
        "Better results with {t} come from small, deliberate changes.",
        "Changing one thing at a time shows which change actually helped.",
    ),
    (
        "What does an expert do differently with {t}?",
        "Experienced people treat {t} with a few firm rules.",
        "None of these rules is difficult, but together they make a clear difference.",
    ),
    (
        "Is there a simple explanation of {t}?",
        "Put simply, {t} comes down to three ideas.",
        "Those three ideas are enough to reason about most situations.",
    ),
]


def posts_xml(path: Path, n: int = 200, seed: int = 0) -> int:
    """Write ``n`` questions, each with one answer scored 10 or more, as a site's Posts.xml."""
    rng = random.Random(seed)
    combos = [(t, a) for t in range(len(TOPICS)) for a in range(len(ANGLES))]
    rng.shuffle(combos)
    rows = []
    for i, (t, a) in enumerate(combos[:n]):
        topic, *facts = TOPICS[t]
        question, opening, closing = ANGLES[a]
        facts = facts[:]
        rng.shuffle(facts)
        answer = " ".join([opening.format(t=topic), *facts, closing])
        title = question.format(t=topic)
        q_id, a_id = 2 * i + 1, 2 * i + 2
        body = f"<p>{title} Any practical advice is welcome.</p>"
        rows.append(
            f'  <row Id="{q_id}" PostTypeId="1" AcceptedAnswerId="{a_id}" Score="{rng.randint(3, 60)}" '
            f'Body="{html.escape(body, quote=True)}" Title="{html.escape(title, quote=True)}" '
            'Tags="&lt;howto&gt;" AnswerCount="1" />'
        )
        rows.append(
            f'  <row Id="{a_id}" PostTypeId="2" ParentId="{q_id}" Score="{rng.randint(10, 90)}" '
            f'Body="{html.escape("<p>" + answer + "</p>", quote=True)}" />'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n",
        encoding="utf-8",
    )
    return min(n, len(combos))
