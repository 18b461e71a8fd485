# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Checkpoints are read without running code from them.

A crafted checkpoint writes a marker file when it is unpickled: the marker
must never appear unless the caller opted in (``trust=True``). The
toolkit's own checkpoints (written by a real MMEngine Runner) must load
whole with torch's own ``weights_only=True`` and no allow-list, and resume
exactly; MMEngine's plain checkpoints and the layout of a released mmseg
1.x checkpoint load their weights and meta safely.
"""
import json
import logging
import os.path as osp
import pickle
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmseg_wsbcn.engine import (CheckpointLoadError, SafeCheckpointRunner,
                                UntrustedCheckpointError,
                                load_checkpoint_file)
from mmseg_wsbcn.engine.plain_checkpoint import from_plain, to_plain


class Payload:
    """Unpickles to ``exec(code)``: writes ``marker`` (the attack)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')", ))


class _ImportBuiltins:
    """Pickles as ``__import__('builtins')``."""

    def __reduce__(self):
        return (__import__, ('builtins', ))


class _GetExec:
    """Pickles as ``getattr(__import__('builtins'), 'exec')``."""

    def __call__(self, *args):  # pickle wants a callable
        pass

    def __reduce__(self):
        return (getattr, (_ImportBuiltins(), 'exec'))


class GetattrPayload(Payload):
    """The same attack through ``getattr``: it calls what ``getattr``
    returned."""

    def __reduce__(self):
        return (_GetExec(), (f"open({self.marker!r}, 'w').write('ran')", ))


def weights() -> OrderedDict:
    return OrderedDict(
        [('conv.weight', torch.randn(4, 3, 3, 3)),
         ('conv.bias', torch.randn(4))])


def assert_same_weights(loaded, expected) -> None:
    assert list(loaded) == list(expected)
    for key in expected:
        assert torch.equal(loaded[key], expected[key])


@pytest.fixture
def marker(tmp_path):
    return str(tmp_path / 'marker')


@pytest.mark.parametrize('where', ['weight', 'whole', 'state_dict'])
def test_payload_in_the_weights_is_refused_in_one_line(
        tmp_path, marker, where):
    state = weights()
    if where == 'weight':
        state['conv.bias'] = Payload(marker)
        obj = {'state_dict': state, 'meta': {}}
    elif where == 'state_dict':
        obj = {'state_dict': Payload(marker), 'meta': {}}
    else:
        obj = Payload(marker)
    path = str(tmp_path / 'evil.pth')
    torch.save(obj, path)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert '\n' not in message
    assert f"'{path}'" in message and 'builtins.exec' in message
    assert '--trust-checkpoint' in message
    assert 'trust_checkpoint=True' in message
    assert not osp.exists(marker)


def test_getattr_chain_is_refused_and_never_runs(tmp_path, marker):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': GetattrPayload(marker)}, path)
    with pytest.raises(UntrustedCheckpointError, match='builtins.getattr'):
        load_checkpoint_file(path)
    assert not osp.exists(marker)
    load_checkpoint_file(path, trust=True)  # the payload is real
    assert open(marker).read() == 'ran'


def test_payload_outside_the_weights_is_left_out(tmp_path, marker, caplog):
    state = weights()
    path = str(tmp_path / 'extra.pth')
    torch.save(
        {
            'state_dict': state,
            'meta': {
                'seed': 3,
                'note': Payload(marker)
            },
            'optimizer': Payload(marker)
        }, path)
    loaded = load_checkpoint_file(path)
    assert not osp.exists(marker)
    assert_same_weights(loaded['state_dict'], state)
    assert loaded['meta'] == {'seed': 3}
    assert 'optimizer' not in loaded


def test_trust_opts_in_to_full_unpickling(tmp_path, marker):
    """The opt-in really unpickles (so the tests above can fail)."""
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': weights(), 'x': Payload(marker)}, path)
    load_checkpoint_file(path, trust=True)
    assert open(marker).read() == 'ran'


def test_damaged_file_is_still_a_load_error(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'state_dict': weights()}, str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointLoadError):
        load_checkpoint_file(str(path))


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


def tiny_runner(work_dir, runner_cls=Runner, max_iters=4, **kwargs):
    torch.manual_seed(0)
    data = [dict(inputs=torch.randn(2)) for _ in range(8)]
    return runner_cls(
        model=TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        # OneCycle keeps a bound method (anneal_func) in its state
        param_scheduler=dict(
            type='OneCycleLR',
            eta_max=0.1,
            total_steps=max_iters,
            by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=2),
            logger=dict(
                type='LoggerHook', interval=1, log_metric_by_epoch=False)),
        default_scope='mmengine',
        experiment_name=f'{osp.basename(str(work_dir))}-{id(data)}',
        **kwargs)


def test_own_checkpoint_is_plain_and_resumes_exactly(tmp_path):
    first = tiny_runner(tmp_path / 'a', SafeCheckpointRunner)
    first.train()
    path = str(tmp_path / 'a' / 'iter_4.pth')
    # torch's own safe loader, no allow-list: nothing but plain data
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    raw = torch.load(path, map_location='cpu', weights_only=True)
    assert 'message_hub' in raw and 'param_schedulers' in raw

    loaded = load_checkpoint_file(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    expected = first.message_hub.get_scalar('train/loss').data
    np.testing.assert_array_equal(buffer.data[0], expected[0])
    np.testing.assert_array_equal(buffer.data[1], expected[1])
    assert buffer.data[0].dtype == expected[0].dtype

    # resume at iteration 2 and train to 4: the same weights as the run
    second = tiny_runner(
        tmp_path / 'b',
        SafeCheckpointRunner,
        resume=True,
        load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    second.train()
    for a, b in zip(first.model.state_dict().values(),
                    second.model.state_dict().values()):
        assert torch.equal(a, b)
    scheduler = second.param_schedulers[0]
    assert callable(scheduler.anneal_func)
    assert scheduler.last_step == first.param_schedulers[0].last_step


def test_plain_round_trip_of_mmengine_state(tmp_path):
    """to_plain, a file, torch's own weights_only load (no allow-list) and
    from_plain on MMEngine's own objects, compared with the originals field
    by field."""
    hub = MessageHub.get_instance('plain-round-trip')
    for value in (0.5, 0.25, 0.125):
        hub.update_scalar('train/loss', value)
    hub.update_info('best', np.float32(0.75))
    hub.update_info('table', np.arange(6, dtype=np.int16).reshape(2, 3))
    original = hub.state_dict()
    hub.update_info('names', np.array(['road', 'sky']))
    checkpoint = {'message_hub': hub.state_dict(), 'meta': {'seed': 1}}
    path = str(tmp_path / 'plain.pth')
    torch.save(to_plain(checkpoint), path)
    loaded = torch.load(path, weights_only=True)
    saved = loaded['message_hub']
    assert not isinstance(saved['log_scalars']['train/loss'], HistoryBuffer)
    assert type(saved['runtime_info']['best']) is float
    assert saved['runtime_info']['names'] == ['road', 'sky']
    back = from_plain(loaded)['message_hub']
    buffer = back['log_scalars']['train/loss']
    ref = original['log_scalars']['train/loss']
    np.testing.assert_array_equal(buffer.data[0], ref.data[0])
    np.testing.assert_array_equal(buffer.data[1], ref.data[1])
    assert buffer.max_length == ref.max_length
    table = back['runtime_info']['table']
    assert table.dtype == np.int16
    np.testing.assert_array_equal(table, original['runtime_info']['table'])
    assert back['runtime_info']['best'] == 0.75


def test_mmengine_plain_checkpoint_reads_weights_and_meta(tmp_path):
    """MMEngine's own CheckpointHook pickles HistoryBuffer (through
    builtins.getattr): the weights and meta load, the rest is left out."""
    runner = tiny_runner(tmp_path / 'w', Runner, max_iters=2)
    runner.train()
    path = str(tmp_path / 'w' / 'iter_2.pth')
    assert 'builtins.getattr' in \
        torch.serialization.get_unsafe_globals_in_checkpoint(path)
    loaded = load_checkpoint_file(path)
    assert_same_weights(loaded['state_dict'], runner.model.state_dict())
    assert loaded['meta']['iter'] == 2
    assert loaded['message_hub']['log_scalars'] == {}


def test_released_mmseg_layout_loads_safely(tmp_path):
    """The keys and value types of a released mmseg 1.x checkpoint
    (published with mmseg's publish_model.py: optimizer removed, message
    hub and schedulers kept)."""
    hub = MessageHub.get_instance('released-layout')
    hub.update_scalar('train/loss', 0.3)
    hub.update_info('iter', 80000)
    state = weights()
    meta = {
        'mmengine_version': '0.7.1',
        'seed': 1234,
        'experiment_name': 'deeplabv3_r50-d8_4xb2-80k_cityscapes',
        'time': '20230227_101002',
        'cfg': "model = dict(type='EncoderDecoder')\n",
        'iter': 80000,
        'epoch': 0,
        'dataset_meta': {
            'classes': ('road', 'sidewalk'),
            'palette': [[128, 64, 128], [244, 35, 232]],
            'label_map': None,
            'reduce_zero_label': False,
        },
    }
    path = str(tmp_path / 'released.pth')
    torch.save(
        {
            'meta': meta,
            'state_dict': state,
            'message_hub': hub.state_dict(),
            'param_schedulers': [{
                'begin': 0,
                'end': 80000,
                'last_step': 80000,
                'base_values': [0.01]
            }],
        }, path)
    loaded = load_checkpoint_file(path)
    assert_same_weights(loaded['state_dict'], state)
    assert loaded['meta'] == meta
    assert loaded['param_schedulers'][0]['last_step'] == 80000
    assert loaded['message_hub']['runtime_info'] == {'iter': 80000}


def test_partial_read_warns_in_one_line(tmp_path, marker):
    path = str(tmp_path / 'extra.pth')
    torch.save({'state_dict': weights(), 'extra': Payload(marker)}, path)
    logger = MMLogger.get_current_instance()
    handler = _ListHandler()
    logger.addHandler(handler)
    try:
        load_checkpoint_file(path)
    finally:
        logger.removeHandler(handler)
    lines = [r for r in handler.records if 'read safely without' in r]
    assert len(lines) == 1 and '\n' not in lines[0]
    assert 'without extra (they hold builtins.exec' in lines[0]
    assert '--trust-checkpoint' in lines[0]
    assert not osp.exists(marker)


class _ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


@pytest.fixture
def http_folder(tmp_path):
    """``(folder, base_url)``: files in ``folder`` served on loopback; the
    torch hub cache moved under ``tmp_path`` for the test."""
    import functools
    import http.server
    import threading

    folder = tmp_path / 'served'
    folder.mkdir()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        yield folder, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        torch.hub.set_dir(hub_dir)
        server.shutdown()


def test_urls_are_read_safely_through_mmengine(http_folder, marker):
    """A URL in ``load_from`` or a ``Pretrained`` ``init_cfg`` goes through
    MMEngine's CheckpointLoader, which the toolkit points at the safe
    loader for http(s)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    folder, url = http_folder
    state = weights()
    torch.save({'state_dict': state}, str(folder / 'good.pth'))
    loaded = CheckpointLoader.load_checkpoint(f'{url}/good.pth')
    assert_same_weights(loaded['state_dict'], state)
    evil = weights()
    evil['conv.bias'] = Payload(marker)
    torch.save({'state_dict': evil}, str(folder / 'evil.pth'))
    with pytest.raises(UntrustedCheckpointError, match='evil.pth'):
        CheckpointLoader.load_checkpoint(f'{url}/evil.pth')
    assert not osp.exists(marker)


def test_malformed_plain_tags_stay_dicts(tmp_path):
    """A foreign dict that carries the tag but not the fields is left as
    it is (no traceback from inside the conversion)."""
    path = str(tmp_path / 'tagged.pth')
    bad = {'__plain__': 'HistoryBuffer', 'log_history': [1.0]}
    torch.save({'state_dict': weights(), 'message_hub': {'x': bad}}, path)
    assert load_checkpoint_file(path)['message_hub']['x'] == bad


def test_legacy_format_payload_is_refused(tmp_path, marker):
    path = str(tmp_path / 'legacy.pth')
    torch.save({'state_dict': {'w': Payload(marker)}},
               path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError, match='legacy'):
        load_checkpoint_file(path)
    assert not osp.exists(marker)
    legacy_good = str(tmp_path / 'legacy_good.pth')
    state = weights()
    torch.save({'state_dict': state},
               legacy_good,
               _use_new_zipfile_serialization=False)
    assert_same_weights(load_checkpoint_file(legacy_good)['state_dict'],
                        state)


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy's helpers under numpy 1's module name, as every
    checkpoint written before numpy 2 names them."""

    def save_global(self, obj, name=None):
        if getattr(obj, '__module__', None) == 'numpy._core.multiarray':
            self.write(pickle.GLOBAL + b'numpy.core.multiarray\n' +
                       obj.__name__.encode() + b'\n')
            self.memoize(obj)
            return
        super().save_global(obj, name)


def test_numpy1_values_load_whole(tmp_path):
    path = str(tmp_path / 'numpy1.pth')
    meta = {'seed': np.int64(7), 'scale': np.arange(3, dtype=np.float32)}
    torch.save({'state_dict': weights(), 'meta': meta},
               path,
               pickle_module=types.SimpleNamespace(
                   Pickler=_Numpy1Pickler, __name__='pickle'))
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert 'numpy.core.multiarray.scalar' in unsafe  # torch's own list
    loaded = load_checkpoint_file(path)['meta']
    assert loaded['seed'] == 7
    np.testing.assert_array_equal(loaded['scale'], meta['scale'])


def test_resume_refuses_a_file_it_cannot_read_whole(tmp_path):
    """MMEngine's plain CheckpointHook pickles OneCycleLR's bound method:
    resuming without the scheduler state would not be exact."""
    runner = tiny_runner(tmp_path / 'plain', Runner, max_iters=2)
    runner.train()
    path = str(tmp_path / 'plain' / 'iter_2.pth')
    second = tiny_runner(
        tmp_path / 'r', SafeCheckpointRunner, resume=True, load_from=path)
    with pytest.raises(UntrustedCheckpointError, match='param_schedulers'):
        second.train()
    trusting = tiny_runner(
        tmp_path / 't', SafeCheckpointRunner, resume=True, load_from=path)
    trusting.trust_checkpoint = True
    trusting.train()
    assert trusting.iter == 4


def test_zoo_names_and_local_paths_are_read_safely(http_folder, marker,
                                                   tmp_path, monkeypatch):
    """``open-mmlab://`` names (resolved through MMEngine's home, which a
    user's open_mmlab.json extends) and local paths, as a Pretrained
    init_cfg loads them."""
    from mmengine.runner.checkpoint import CheckpointLoader

    folder, url = http_folder
    evil = weights()
    evil['conv.bias'] = Payload(marker)
    torch.save({'state_dict': evil}, str(folder / 'evil.pth'))
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(
        json.dumps({'evil_net': f'{url}/evil.pth'}))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    with pytest.raises(UntrustedCheckpointError):
        CheckpointLoader.load_checkpoint('open-mmlab://evil_net')
    with pytest.raises(UntrustedCheckpointError):
        CheckpointLoader.load_checkpoint(str(folder / 'evil.pth'))
    assert not osp.exists(marker)
