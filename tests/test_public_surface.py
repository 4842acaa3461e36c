"""The stable public surface (DESIGN.md) says what it is: every public class, method and function
of it has a docstring of its own, and every message class too."""
import inspect

import pytest

import perpcore
from perpcore import config, errors
from perpcore import messages as m
from perpcore.exchange import BookView
from perpcore.views import AccountView, PositionView

CLASSES = [perpcore.Exchange, BookView, AccountView, PositionView, config.VenueConfig,
           config.AssetSpec, config.InstrumentSpec, errors.Halt, errors.Rejection,
           errors.RejectCode]


def _own_doc(obj) -> bool:
    doc = inspect.getdoc(obj)
    if not doc:
        return False
    if inspect.isclass(obj):
        # a class's own docstring, not one inherited from a base
        return "__doc__" in vars(obj) and vars(obj)["__doc__"] is not None
    return True


def _public_callables(cls):
    """Public methods and properties defined by the class or its perpcore bases."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("perpcore"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if callable(member) or isinstance(member, property):
                yield f"{cls.__name__}.{name}", member


def test_every_public_class_and_method_has_a_docstring():
    missing = [c.__name__ for c in CLASSES if not _own_doc(c)]
    missing += [name for c in CLASSES for name, member in _public_callables(c)
                if not _own_doc(member)]
    missing += [name for name in perpcore.__all__
                if callable(getattr(perpcore, name)) and not _own_doc(getattr(perpcore, name))]
    assert missing == []


@pytest.mark.parametrize("cls", sorted(m._all_subclasses(m.Message), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_message_says_what_it_is(cls):
    assert _own_doc(cls)


def test_the_check_sees_a_missing_docstring():
    class Bare:
        def method(self):
            pass
    assert not _own_doc(Bare) and not _own_doc(Bare.method)
