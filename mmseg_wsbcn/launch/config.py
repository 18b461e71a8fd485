# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Load a config for the tools and check the paths it names before any
long-running work starts, so that a typo costs one clear line, not a
traceback from deep inside MMEngine ten minutes later."""
import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config, ConfigDict

from ..models.utils.ckpt_convert import conversion_command
from ..utils.errors import ToolError

#: Which dataloaders each tool mode builds.
_LOADERS = {
    'train': ('train_dataloader', 'val_dataloader'),
    'test': ('test_dataloader', ),
}


def iter_dataset_cfgs(cfg: ConfigDict,
                      where: str) -> Iterator[Tuple[str, ConfigDict]]:
    """Yield ``(where, dataset_cfg)`` for a dataset config and every dataset
    wrapped in it (``ConcatDataset.datasets``, ``RepeatDataset.dataset``,
    ``MultiImageMixDataset.dataset``)."""
    if not isinstance(cfg, dict):
        return
    yield where, cfg
    if isinstance(cfg.get('dataset'), dict):
        yield from iter_dataset_cfgs(cfg['dataset'], f'{where}.dataset')
    for i, sub in enumerate(cfg.get('datasets') or []):
        yield from iter_dataset_cfgs(sub, f'{where}.datasets[{i}]')


def loader_names(cfg: Config, mode: str) -> List[str]:
    """The dataloaders the runner of ``mode`` builds: those of
    :data:`_LOADERS` that the config sets (``val_dataloader`` only with a
    ``val_cfg``).

    Args:
        cfg (Config): The full config.
        mode (str): ``'train'`` (train and val loaders) or ``'test'``.

    Returns:
        list[str]: E.g. ``['train_dataloader', 'val_dataloader']``.
    """
    return [
        loader for loader in _LOADERS[mode] if cfg.get(loader) is not None
        and not (loader == 'val_dataloader' and cfg.get('val_cfg') is None)
    ]


def check_data_roots(cfg: Config, mode: str) -> None:
    """Raise :class:`ToolError` if a dataset of ``mode`` names a missing
    ``data_root``.

    Args:
        cfg (Config): The full config.
        mode (str): ``'train'`` (train and val loaders) or ``'test'``.
    """
    for loader in loader_names(cfg, mode):
        for where, ds in iter_dataset_cfgs(cfg[loader].get('dataset'),
                                           f'{loader}.dataset'):
            root = ds.get('data_root')
            if root and '://' not in str(root) and not osp.isdir(root):
                raise ToolError(
                    f"data folder '{root}' ({where}.data_root) does not "
                    'exist. Prepare the dataset (see '
                    'configs/deeplabv3/README.md) or point the config at it, '
                    f"e.g. --cfg-options {where}.data_root=PATH")


def check_checkpoint_paths(cfg: Config, mode: str) -> None:
    """Raise :class:`ToolError` if the config names a local checkpoint file
    that does not exist.

    ``load_from`` is checked in both modes; ``model.pretrained`` and
    ``Pretrained`` ``init_cfg`` entries only for training (testing loads the
    trained checkpoint over them). URLs and ``open-mmlab://``-style names
    are left to MMEngine.
    """
    candidates = [('load_from', cfg.get('load_from'))]
    model = (cfg.get('model') or {}) if mode == 'train' else {}
    candidates.append(('model.pretrained', model.get('pretrained')))
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        # mmseg allows a list of auxiliary heads
        modules = model.get(part) or {}
        for module in (modules if isinstance(modules, list) else [modules]):
            init_cfg = module.get('init_cfg')
            for ic in (init_cfg if isinstance(init_cfg, list) else [init_cfg]):
                if isinstance(ic, dict) and ic.get('type') == 'Pretrained':
                    candidates.append((f'model.{part}.init_cfg.checkpoint',
                                       ic.get('checkpoint')))
    for where, path in candidates:
        if path and isinstance(path, str) and '://' not in path \
                and not osp.isfile(path):
            command = conversion_command(path)
            how = (f"convert the authors' ImageNet backbone first: "
                   f'{command} (docs/pretrained.md)' if command else
                   "download or convert it first (see the config's README)")
            raise ToolError(
                f"checkpoint file '{path}' ({where}) does not exist; {how}, "
                f'or override it with --cfg-options {where}=...')


def prepare_config(config: str,
                   mode: str,
                   work_dir: Optional[str] = None,
                   cfg_options: Optional[dict] = None,
                   launcher: str = 'none') -> Config:
    """Load ``config`` the way mmseg's tools do and check what it names.

    Args:
        config (str): Path of the config file.
        mode (str): ``'train'`` or ``'test'``.
        work_dir (str, optional): ``--work-dir``; defaults to the config's
            ``work_dir`` or ``./work_dirs/<config name>``.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        launcher (str): ``--launcher``.

    Returns:
        Config: The merged config, with ``launcher`` and ``work_dir`` set.
        Call :func:`check_paths` once the tool has set everything else.

    Raises:
        ToolError: The config file is missing.
    """
    if not osp.isfile(config):
        raise ToolError(f"config file '{config}' does not exist")
    cfg = Config.fromfile(config)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def check_paths(cfg: Config, mode: str) -> None:
    """Check the data folders and checkpoint files ``mode`` will read."""
    check_data_roots(cfg, mode)
    check_checkpoint_paths(cfg, mode)


def check_slide_inference(cfg: Config) -> None:
    """Raise :class:`ToolError` if ``model.test_cfg`` slides windows with a
    stride larger than the window.

    mmseg's ``slide_inference`` then leaves rows or columns uncovered at
    some image sizes and stops with a bare ``AssertionError`` (``count_mat ==
    0``), e.g. ``crop_size=(512, 1024), stride=(768, 768)`` on a 1024-high
    Cityscapes image scaled by ``--tta``'s 1.25 (1280 rows: windows at 0 and
    768 leave 512-767 out).
    """
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    if test_cfg.get('mode') != 'slide':
        return
    crop, stride = test_cfg.get('crop_size'), test_cfg.get('stride')
    if not crop or not stride:
        raise ToolError(
            "model.test_cfg mode='slide' needs crop_size and stride, e.g. "
            'crop_size=(769, 769), stride=(513, 513)')
    for i, side in enumerate(('height', 'width')):
        if stride[i] > crop[i]:
            fixed = tuple(min(s, c) for s, c in zip(stride, crop))
            raise ToolError(
                f'model.test_cfg: stride {tuple(stride)} is larger than '
                f'crop_size {tuple(crop)} in {side}, so the sliding windows '
                'leave gaps (mmseg stops with an AssertionError on '
                'count_mat at some image sizes, e.g. the --tta scales); use '
                f'a stride no larger than the crop, e.g. --cfg-options '
                f'model.test_cfg.stride="{fixed}"')
