"""Image differencing (LSST's ``ip_diffim``): templates, PSF matching, subtraction, diaSources.

* :mod:`hpcpipe.diffim.psf_match`: the Alard-Lupton matching kernel (``ImagePsfMatchTask``);
* :mod:`hpcpipe.diffim.template`: the deep coadd warped onto a calexp (``GetCoaddAsTemplateTask``);
* :mod:`hpcpipe.diffim.dipole`: the dipole model of badly subtracted pairs;
* :mod:`hpcpipe.diffim.image_difference`: ``ImageDifferenceTask``, the ``imageDifference``
  command-line task writing ``deepDiff_differenceExp`` and ``deepDiff_diaSrc``.
"""
