"""``loopscope top``: a live Textual screen over one watch session (optional extra ``tui``)."""
