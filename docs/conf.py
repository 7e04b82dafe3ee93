"""Sphinx configuration: ``nox -s docs`` builds the site with warnings as errors."""

from __future__ import annotations

import s3torch_async

project = "s3torch-async"
author = "s3torch-async developers"
copyright = "s3torch-async developers"
release = s3torch_async.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"s3torch-async {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

# No intersphinx (the build must not reach the network): names from the standard library and
# third-party packages are shown as written, not linked.
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(collections|abc|io|os|typing|asyncio|concurrent|types|enum|pathlib)(\..*)?",
    ),
    ("py:.*", r"(torch|lightning|botocore|aiobotocore)(\..*)?"),
    # torch's DCP plan types, named bare in the DCP classes' annotations
    ("py:class", r"(SavePlan|LoadPlan|Metadata|WriteResult|Future)"),
    # private bases and aliases (``_backend.ObjectSize``...) and type variables
    ("py:class", r"s3torch_async\.(\w+\.)*_\w+(\.\w+)*"),
    ("py:class", r"(ReaderConstructor|T|R)"),
    # internal types named bare in annotations of documented classes
    (
        "py:class",
        r"(DatasetSource|ReadClient|WriteClient|ObjectVersion|PartAssembler|ListingCursor)",
    ),
    ("py:class", r"s3torch_async\..*\.[A-Z]"),
]


def _resolve_short_names(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve ``S3Exception`` or ``s3torch_async._types.ObjectInfo`` to where it is documented.

    Docstrings and annotations name classes by their defining module or bare name; the API page
    documents them once, mostly at the top level. Prefer ``s3torch_async.<name>``, else a unique
    documented object with the same last component.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    short = target.rsplit(".", 1)[-1]
    domain = env.get_domain("py")
    candidates = [
        name for name in domain.objects if name == short or name.endswith("." + short)
    ]
    preferred = f"s3torch_async.{short}"
    if preferred in candidates:
        candidates = [preferred]
    if len(candidates) != 1:
        return None
    obj = domain.objects[candidates[0]]
    from sphinx.util.nodes import make_refnode

    return make_refnode(
        app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, candidates[0]
    )


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("missing-reference", _resolve_short_names)
