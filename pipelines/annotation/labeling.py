"""The labeling interface and project settings of the verification project.

Annotators see the image as it is (no instance overlays: they solve the question themselves),
the question text, and give a numeric ``answer``, a verdict ``answerable`` (one of
:data:`VERDICTS`) and an optional ``comment``. These three ``from_name`` values are the only
fields an annotation may contain (:mod:`pipelines.annotation.validate` refuses any other).
"""

from __future__ import annotations

from typing import Any

ANSWER_FIELD = "answer"
VERDICT_FIELD = "answerable"
COMMENT_FIELD = "comment"
KNOWN_FIELDS = frozenset({ANSWER_FIELD, VERDICT_FIELD, COMMENT_FIELD})

ANSWERABLE = "answerable"
NOT_ANSWERABLE = "not answerable"
AMBIGUOUS = "ambiguous"
VERDICTS = (ANSWERABLE, NOT_ANSWERABLE, AMBIGUOUS)

# What a careful reader needs to answer the program's way (docs/hop-programs.md), shown on the
# labeling screen under every question, and in the reader-study packets.
CONVENTIONS = (
    "'Further left/right than X', 'higher up/lower down in the picture than X': the object's centre is "
    "beyond X's edge on that side, anywhere in the picture. 'Nearest': between centres. "
    "'Largest/smallest': the area covered in the picture. Colours: the object's main colour. "
    "Positions count from 1. Counts cover the whole picture unless the question narrows them."
)

LABEL_CONFIG = f"""<View>
  <Image name="image" value="$image" zoom="true" zoomControl="true"/>
  <Header value="$question"/>
  <Text name="conventions" value="{CONVENTIONS}"/>
  <Number name="{ANSWER_FIELD}" toName="image" step="any"/>
  <Choices name="{VERDICT_FIELD}" toName="image" choice="single-radio" required="true" showInline="true">
    <Choice value="{ANSWERABLE}"/>
    <Choice value="{NOT_ANSWERABLE}"/>
    <Choice value="{AMBIGUOUS}"/>
  </Choices>
  <TextArea name="{COMMENT_FIELD}" toName="image" rows="2" maxSubmissions="1"
            placeholder="Optional: why is it not answerable or ambiguous?"/>
</View>
"""



def instructions() -> str:
    """The project's instructions (``expert_instruction``: HTML that Label Studio shows above the labeling
    screen), from ``templates/instructions.html`` (autoescaped).

    :data:`CONVENTIONS` goes in as trusted text: it is this module's constant, no data, and Label Studio
    stores the exact string, which the project guard compares (escaping its apostrophes would make every
    existing project read as changed outside the platform)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.PackageLoader("pipelines.annotation", "templates"),
                             autoescape=jinja2.select_autoescape(("html",)), auto_reload=False)
    return env.get_template("instructions.html").render(conventions=Markup(CONVENTIONS))


def project_settings(title: str, annotators_required: int = 4, handout: str = "serial") -> dict[str, Any]:
    """The project payload (POST/PATCH ``/api/projects``) that bootstrap enforces.

    ``maximum_annotations`` (with ``overlap_cohort_percentage=100``) is what a pushed task's
    ``overlap`` becomes: ``annotators_required`` for the ``parallel`` handout (``/next`` hands every
    task to that many users at once), 1 for ``serial`` (one at a time; the poller opens each task to
    one more annotator after each agreeing answer, and ``show_overlap_first`` serves those before
    fresh tasks: :mod:`pipelines.annotation.handout`). Skipping and seeing other users' results
    (history, collaborators' predictions) are off so answers stay independent.
    """
    serial = handout == "serial"
    return {
        "title": title,
        "label_config": LABEL_CONFIG,
        "expert_instruction": instructions(),
        "show_instruction": True,
        "maximum_annotations": 1 if serial else annotators_required,
        "overlap_cohort_percentage": 100,
        "show_overlap_first": serial,
        "show_skip_button": False,
        "show_annotation_history": False,
        "show_collab_predictions": False,
        "show_ground_truth_first": False,
        "enable_empty_annotation": False,
        "sampling": "Uniform sampling",
        "is_published": True,
    }
