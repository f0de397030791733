"""One function per DVC stage, each handed its params sections, the artifact catalogue and the
device; steps never import each other."""
