# The toolkit's runtime defaults: mmseg's, plus the package import (which
# registers WSConv2d, BCN and the runner) and the runner that resumes under
# torch >= 2.6 and saves checkpoints atomically (mmseg_wsbcn/engine/runner.py).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
runner_type = 'WSBCNRunner'
